"""Email delivery over SMTP: the html as the body, the four files attached.

`SmtpConfig` is built by the command from flags and `GPULENS_SMTP_*`; its password never appears in
its repr, in a log line or in an error message.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from gpulens.attribution.report.render import CONTENT_TYPES
from gpulens.errors import GpulensError

TlsMode = Literal["starttls", "ssl", "none"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    tls: TlsMode = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


def build_message(
    subject: str, html: str, files: Mapping[str, bytes], *, sender: str, recipients: Sequence[str]
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content("The weekly GPU spend report is in the html part and the attached files.")
    msg.add_alternative(html, subtype="html")
    for name, data in files.items():
        maintype, subtype = CONTENT_TYPES.get(name, "application/octet-stream").split(";")[0].split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def send_email(config: SmtpConfig, msg: EmailMessage) -> None:
    """Send `msg` to `config.recipients`; TLS as configured (`ssl` wraps from the first byte,
    `starttls` upgrades and refuses to log in over plain text when the server cannot)."""
    context = config.ssl_context or ssl.create_default_context()
    try:
        if config.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        with smtp:
            if config.tls == "starttls":
                smtp.starttls(context=context)
            if config.user:
                smtp.login(config.user, config.password or "")
            refused = smtp.send_message(msg, from_addr=config.sender, to_addrs=list(config.recipients))
    except smtplib.SMTPAuthenticationError as exc:
        raise GpulensError(
            f"SMTP login to {config.host}:{config.port} as {config.user!r} was refused "
            f"({exc.smtp_code}); check GPULENS_SMTP_USER/GPULENS_SMTP_PASSWORD"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise GpulensError(
            f"sending the report via {config.host}:{config.port} failed: "
            f"{type(exc).__name__}: {_safe(exc, config)}"
        ) from None
    if refused:
        raise GpulensError(f"the SMTP server refused recipients: {', '.join(sorted(refused))}")


def _safe(exc: BaseException, config: SmtpConfig) -> str:
    """The error text with the password blanked, should a server ever echo it back."""
    text = str(exc)
    return text.replace(config.password, "***") if config.password else text
