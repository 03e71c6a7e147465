"""Where export files come from: local files, directories (AWS's own layout, manifests included) and
`s3://bucket/prefix`.

S3 objects are streamed to a temporary directory with read-only calls (ListObjectsV2, GetObject)
through boto3's default credential chain, because DuckDB's own S3 extension cannot be installed
offline. A manifest (`*Manifest.json`) names the files of the current delivery; where one is
present only the files it lists are read, since AWS leaves superseded deliveries beside it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpulens.errors import GpulensError

DATA_SUFFIXES = (".csv", ".csv.gz", ".gz", ".parquet", ".zip")
MANIFEST_SUFFIX = "manifest.json"


@dataclass(frozen=True)
class SourceFile:
    """`local`: the file DuckDB reads; `name`: what the user gave (path or s3:// URL), for messages."""

    local: Path
    name: str


def is_data(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def is_manifest(name: str) -> bool:
    return name.lower().endswith(MANIFEST_SUFFIX)


def current_manifests(names: list[str]) -> list[str]:
    """The manifests that describe current deliveries: legacy CUR keeps a copy of each delivery's
    manifest inside its assembly folder and the current one a level up, so a manifest below another
    manifest's folder is a superseded delivery and is dropped."""
    folders = {_folder(n) for n in names}
    return [n for n in names if not any(_folder(n) != f and _folder(n).startswith(f) for f in folders)]


def _folder(name: str) -> str:
    return name.rsplit("/", 1)[0] + "/" if "/" in name else ""


def manifest_keys(text: str, where: str) -> list[str]:
    """Object keys (without bucket) listed by a CUR 2.0 (`dataFiles`) or legacy (`reportKeys`) manifest."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GpulensError(
            f"manifest is not valid JSON ({exc.msg} at line {exc.lineno})", path=where
        ) from exc
    if "dataFiles" in doc:
        return [u.split("/", 3)[3] if u.startswith("s3://") else u for u in doc["dataFiles"]]
    if "reportKeys" in doc:
        return list(doc["reportKeys"])
    raise GpulensError("manifest lists no files (neither dataFiles nor reportKeys)", path=where)


def local_files(root: Path) -> list[SourceFile]:
    """A file, or a directory walked recursively; manifests, where present, choose the files."""
    if not root.exists():
        raise GpulensError("no such file or directory", path=root)
    if root.is_file():
        if is_manifest(root.name):
            return _listed(
                root.read_text(encoding="utf-8"), str(root), root.parent, _walk(_bucket_root(root))
            )
        return [SourceFile(root, str(root))]
    everything = _walk(root)
    found = {p.as_posix(): p for p in everything if is_manifest(p.name)}
    manifests = [found[n] for n in current_manifests(sorted(found))]
    if not manifests:
        return [SourceFile(p, str(p)) for p in everything if is_data(p.name)]
    chosen: dict[Path, SourceFile] = {}
    for m in manifests:
        for f in _listed(m.read_text(encoding="utf-8"), str(m), root, everything):
            chosen[f.local] = f
    return sorted(chosen.values(), key=lambda f: str(f.local))


def _walk(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _bucket_root(manifest: Path) -> Path:
    # A manifest given alone: its keys are relative to the bucket, so search a few levels up.
    return manifest.parents[min(3, len(manifest.parents) - 1)]


def _listed(text: str, where: str, root: Path, candidates: list[Path]) -> list[SourceFile]:
    out = []
    for key in manifest_keys(text, where):
        match = [p for p in candidates if p.as_posix().endswith("/" + key.lstrip("/"))]
        if not match:
            raise GpulensError(f"manifest lists {key!r}, which is not under {root}", path=where)
        out.append(SourceFile(match[0], str(match[0])))
    return out


def s3_files(url: str, client: Any, workdir: Path) -> list[SourceFile]:
    """Downloads the objects under s3://bucket/prefix (or those its manifests list) into `workdir`."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    keys = _list_keys(client, bucket, prefix, url)
    manifests = current_manifests([k for k in keys if is_manifest(k)])
    if manifests:
        wanted: list[str] = []
        for m in manifests:
            text = client.get_object(Bucket=bucket, Key=m)["Body"].read().decode("utf-8")
            wanted += [k for k in manifest_keys(text, f"s3://{bucket}/{m}") if k not in wanted]
    else:
        wanted = [k for k in keys if is_data(k)]
    return [_download(client, bucket, key, workdir) for key in wanted]


def _list_keys(client: Any, bucket: str, prefix: str, url: str) -> list[str]:
    import botocore.exceptions

    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise GpulensError(f"cannot list objects: {exc}", path=url) from exc
    if not keys:
        raise GpulensError("no objects under this prefix", path=url)
    return sorted(keys)


def _download(client: Any, bucket: str, key: str, workdir: Path) -> SourceFile:
    import botocore.exceptions

    url = f"s3://{bucket}/{key}"
    target = workdir / bucket / key
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with target.open("wb") as out:
            shutil.copyfileobj(body, out, length=8 << 20)  # streamed, never the whole object in memory
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise GpulensError(f"cannot download: {exc}", path=url) from exc
    return SourceFile(target, url)


def unzip(src: SourceFile, workdir: Path) -> SourceFile:
    """Legacy CUR's `.csv.zip` parts hold one CSV each; DuckDB reads the extracted file."""
    if not str(src.local).lower().endswith(".zip"):
        return src
    try:
        with zipfile.ZipFile(src.local) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise GpulensError(
                    f"expected one file in the zip archive, found {len(members)}", path=src.name
                )
            target = workdir / "unzipped" / src.local.name.removesuffix(".zip")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(members[0]) as inner, target.open("wb") as out:
                shutil.copyfileobj(inner, out)
    except zipfile.BadZipFile as exc:
        raise GpulensError(f"cannot be read (bad zip archive: {exc})", path=src.name) from exc
    if not target.name.lower().endswith((".csv", ".parquet")):
        target = target.rename(target.with_name(target.name + ".csv"))
    return SourceFile(target, src.name)


@contextmanager
def resolve(specs: Sequence[str], *, s3_client: Any = None) -> Iterator[list[SourceFile]]:
    """The files of one delivery; temporary downloads are removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="gpulens-ingest-") as tmp:
        workdir = Path(tmp)
        found: list[SourceFile] = []
        for spec in specs:
            if spec.startswith("s3://"):
                if s3_client is None:
                    raise GpulensError("an S3 client is needed for s3:// sources", path=spec)
                found += s3_files(spec, s3_client, workdir)
            else:
                found += local_files(Path(spec))
        yield [unzip(f, workdir) for f in found]


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client from the default credential chain; `endpoint_url` for S3-compatible stores."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint_url)
