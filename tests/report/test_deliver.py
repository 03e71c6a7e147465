"""Delivery of the rendered files: a local folder, a real S3-compatible server (moto, 127.0.0.1) and a
real SMTP server (aiosmtpd, STARTTLS or implicit TLS, with login)."""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from gpulens.attribution.report.deliver import deliver_local, deliver_s3, split_s3_url
from gpulens.attribution.report.mail import SmtpConfig, build_message, send_email
from gpulens.attribution.report.render import render_all
from gpulens.errors import GpulensError
from tests.report.sample import sample_report
from tests.report.servers import smtp_server
from tests.support.moto_server import moto_server

NAMES = ["report.csv", "report.html", "report.pdf", "report.xlsx"]


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return render_all(sample_report())


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_local_delivery_writes_the_four_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    written = deliver_local(files, tmp_path / "out" / "w47")
    assert sorted(p.name for p in written) == NAMES
    assert all((tmp_path / "out" / "w47" / n).read_bytes() == files[n] for n in NAMES)
    assert not list((tmp_path / "out" / "w47").glob(".*"))  # no temporary files left behind


def test_s3_delivery_uploads_each_file(aws_env: None, files: dict[str, bytes]) -> None:
    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="finance")
        written = deliver_s3(files, "s3://finance/gpu/2026-W47/", endpoint_url=endpoint)
        assert sorted(written) == [f"s3://finance/gpu/2026-W47/{n}" for n in NAMES]
        listed = s3.list_objects_v2(Bucket="finance", Prefix="gpu/")["Contents"]
        assert sorted(o["Key"] for o in listed) == [f"gpu/2026-W47/{n}" for n in NAMES]
        obj = s3.get_object(Bucket="finance", Key="gpu/2026-W47/report.pdf")
        assert obj["Body"].read() == files["report.pdf"]
        assert obj["ContentType"] == "application/pdf"
        with pytest.raises(GpulensError, match="s3://missing-bucket/report.html failed: .*NoSuchBucket"):
            deliver_s3(files, "s3://missing-bucket", endpoint_url=endpoint)


def test_s3_url_must_name_a_bucket() -> None:
    assert split_s3_url("s3://b") == ("b", "")
    with pytest.raises(GpulensError, match="not an s3://bucket/prefix"):
        split_s3_url("s3:///prefix")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS: it is TLS
@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_email_over_tls_with_login(
    tmp_path: Path, files: dict[str, bytes], tls: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(tmp_path, tls=tls, user="reports", password="s3cret-pw") as (box, ctx):
        config = SmtpConfig(
            host="127.0.0.1",
            port=box.port,
            sender="gpulens@example.org",
            recipients=("fin@example.org", "cto@example.org"),
            tls=tls,  # type: ignore[arg-type]
            user="reports",
            password="s3cret-pw",
            ssl_context=ctx,
        )
        assert "s3cret-pw" not in repr(config)
        msg = build_message(
            "GPU spend, week 2026-W47",
            files["report.html"].decode(),
            files,
            sender=config.sender,
            recipients=config.recipients,
        )
        send_email(config, msg)
    assert box.logins == ["reports"]
    assert box.envelopes == [("gpulens@example.org", ["fin@example.org", "cto@example.org"])]
    got = box.messages[0]
    assert got["Subject"] == "GPU spend, week 2026-W47"
    html = next(p for p in got.walk() if p.get_content_type() == "text/html" and not p.get_filename())
    assert "Spend per team" in html.get_payload(decode=True).decode()
    attached = {p.get_filename(): p.get_payload(decode=True) for p in got.walk() if p.get_filename()}
    assert attached == files
    assert "s3cret-pw" not in caplog.text


def test_wrong_password_is_one_clear_error_without_the_password(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    with smtp_server(tmp_path, tls="starttls", user="reports", password="right") as (box, ctx):
        config = SmtpConfig(
            host="127.0.0.1",
            port=box.port,
            sender="a@example.org",
            recipients=("b@example.org",),
            user="reports",
            password="wrong-pw",
            ssl_context=ctx,
        )
        msg = build_message("s", "<p>x</p>", {}, sender=config.sender, recipients=config.recipients)
        with pytest.raises(GpulensError, match="login .* was refused") as err:
            send_email(config, msg)
    assert "wrong-pw" not in str(err.value)
    assert box.messages == []
