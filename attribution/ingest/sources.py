"""Where export files come from: local files, directories (AWS's own layout, manifests included) and
`s3://bucket/prefix`.

S3 objects are streamed to a temporary directory with read-only calls (ListObjectsV2, GetObject)
through boto3's default credential chain, because DuckDB's own S3 extension cannot be installed
offline. A manifest (`*Manifest.json`) names the files of the current delivery; where one is
present only the files it lists are read for its period, since AWS leaves superseded deliveries
beside it; files of a period no manifest describes are read as given. A part given alone whose
manifest lists other parts is refused, naming them (docs/attribution.md, "Delivery rules").
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpulens.errors import GpulensError

DATA_SUFFIXES = (".csv", ".csv.gz", ".gz", ".parquet", ".zip")
MANIFEST_SUFFIX = "manifest.json"
# AWS's period folders: CUR 2.0 `BILLING_PERIOD=2026-10`, legacy CUR `20261001-20261101`.
_PERIOD_FOLDER = re.compile(r"(?:^|/)(?:BILLING_PERIOD=(\d{4}-\d{2})|(\d{4})(\d{2})01-\d{8})(?:/|$)")


@dataclass(frozen=True)
class SourceFile:
    """`local`: the file DuckDB reads; `name`: what the user gave (path or s3:// URL), for messages;
    `created`: when AWS wrote it (its manifest's time where a manifest chose it, else the file's or
    object's modification time), naive UTC to the second."""

    local: Path
    name: str
    created: datetime | None = None


def path_period(name: str) -> str | None:
    """The billing period (YYYY-MM) named by an AWS period folder in a file's path, if any."""
    found = _PERIOD_FOLDER.search(name.replace("\\", "/"))
    if found is None:
        return None
    return found.group(1) or f"{found.group(2)}-{found.group(3)}"


def file_time(path: Path) -> datetime:
    """A local file's modification time, naive UTC, to the second (S3's LastModified resolution)."""
    return datetime.fromtimestamp(int(path.stat().st_mtime), timezone.utc).replace(tzinfo=None)


def _local(path: Path, created: datetime | None = None) -> SourceFile:
    return SourceFile(path, str(path), created or file_time(path))


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


def _manifest(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GpulensError(
            f"manifest is not valid JSON ({exc.msg} at line {exc.lineno})", path=where
        ) from exc
    if not isinstance(doc, dict):
        raise GpulensError("manifest is not a JSON object", path=where)
    return doc


def manifest_period(text: str, where: str) -> str | None:
    """The billing period a manifest describes: its folder's, else its `billingPeriod.start`."""
    found = path_period(where)
    if found is not None:
        return found
    start = str((_manifest(text, where).get("billingPeriod") or {}).get("start") or "")
    return f"{start[:4]}-{start[4:6]}" if re.match(r"^\d{6}", start) else None


def manifest_keys(text: str, where: str) -> list[str]:
    """Object keys (without bucket) listed by a CUR 2.0 (`dataFiles`) or legacy (`reportKeys`) manifest."""
    doc = _manifest(text, where)
    if "dataFiles" in doc:
        return [u.split("/", 3)[3] if u.startswith("s3://") else u for u in doc["dataFiles"]]
    if "reportKeys" in doc:
        return list(doc["reportKeys"])
    raise GpulensError("manifest lists no files (neither dataFiles nor reportKeys)", path=where)


def local_files(root: Path) -> list[SourceFile]:
    """A file, or a directory walked recursively; manifests, where present, choose the files."""
    if not root.exists():
        raise GpulensError("no such file or directory", path=root)
    # Manifest keys are matched on the tail of each path: a relative `ledger` or `.` must match as
    # its absolute spelling does.
    root = root.resolve()
    if root.is_file():
        if is_manifest(root.name):
            return _listed(root, root.parent, _walk(_bucket_root(root)))
        _refuse_partial(root)
        return [_local(root)]
    everything = _walk(root)
    found = {p.as_posix(): p for p in everything if is_manifest(p.name)}
    manifests = [found[n] for n in current_manifests(sorted(found))]
    if not manifests:
        data = [p for p in everything if is_data(p.name)]
        _refuse_missing_parts(data)
        return [_local(p) for p in data]
    chosen: dict[Path, SourceFile] = {}
    periods: set[str | None] = set()
    for m in manifests:
        periods.add(manifest_period(m.read_text(encoding="utf-8"), m.as_posix()))
        for f in _listed(m, root, everything):
            chosen[f.local] = f
    # A period that no manifest describes, or a file in no period folder, is read as given (its
    # billing-period column decides), never skipped in silence.
    for p in everything:
        period = path_period(p.as_posix())
        if is_data(p.name) and p not in chosen and (period is None or period not in periods):
            chosen[p] = _local(p)
    return sorted(chosen.values(), key=lambda f: str(f.local))


def _refuse_partial(part: Path) -> None:
    """A data file given alone whose manifest (in AWS's layout around it) lists other parts."""
    for m in _nearby_manifests(part):
        keys = manifest_keys(m.read_text(encoding="utf-8"), str(m))
        listed = [k for k in keys if part.resolve().as_posix().endswith("/" + k.lstrip("/"))]
        others = [k.rsplit("/", 1)[-1] for k in keys if k not in listed]
        if listed and others:
            raise GpulensError(
                f"is one part of a delivery whose manifest {m} also lists {', '.join(others)}; give the "
                "manifest or the folder that holds every part (a part alone would replace the whole period)",
                path=part,
            )


def _refuse_missing_parts(data: list[Path]) -> None:
    """A folder of parts (without its manifest inside it) whose manifest, where AWS puts it, lists a
    part that is not there: reading the rest would replace the whole period with part of it."""
    given = [p.as_posix() for p in data]
    for m in sorted({m for p in data for m in _nearby_manifests(p)}):
        keys = manifest_keys(m.read_text(encoding="utf-8"), str(m))
        present = [k for k in keys if any(g.endswith("/" + k.lstrip("/")) for g in given)]
        missing = [k.rsplit("/", 1)[-1] for k in keys if k not in present]
        if present and missing:
            raise GpulensError(
                f"holds parts of a delivery whose manifest {m} also lists {', '.join(missing)}, which are "
                "not here; give the folder that holds every part, or the manifest",
                path=data[0].parent,
            )


def _nearby_manifests(part: Path) -> list[Path]:
    """Manifests where AWS puts them for a part: beside it and a level up (legacy CUR), and in the
    `metadata/` twin of its `data/` folder (CUR 2.0)."""
    candidates = [*part.parent.glob("*"), *part.parent.parent.glob("*")]
    text = part.parent.as_posix() + "/"
    if "/data/" in text:
        head, _, tail = text.rpartition("/data/")
        twin = Path(head) / "metadata" / tail
        candidates += twin.rglob("*") if twin.is_dir() else []
    return sorted({p for p in candidates if p.is_file() and is_manifest(p.name)})


def _walk(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _bucket_root(manifest: Path) -> Path:
    # A manifest given alone: its keys are relative to the bucket, so search a few levels up.
    return manifest.parents[min(3, len(manifest.parents) - 1)]


def _listed(manifest: Path, root: Path, candidates: list[Path]) -> list[SourceFile]:
    """The files a manifest lists, stamped with the manifest's time (the delivery's creation)."""
    where = str(manifest)
    created = file_time(manifest)
    out = []
    for key in manifest_keys(manifest.read_text(encoding="utf-8"), where):
        match = [p for p in candidates if p.as_posix().endswith("/" + key.lstrip("/"))]
        if not match:
            raise GpulensError(f"manifest lists {key!r}, which is not under {root}", path=where)
        out.append(_local(match[0], created))
    return out


def s3_files(url: str, client: Any, workdir: Path) -> list[SourceFile]:
    """Downloads the objects under s3://bucket/prefix (or those its manifests list) into `workdir`."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    listed = _list_keys(client, bucket, prefix, url)
    keys = list(listed)
    manifests = current_manifests([k for k in keys if is_manifest(k)])
    if not manifests:
        return [_download(client, bucket, key, workdir, listed[key]) for key in keys if is_data(key)]
    wanted: dict[str, datetime] = {}
    periods: set[str | None] = set()
    for m in manifests:
        obj = client.get_object(Bucket=bucket, Key=m)
        text = obj["Body"].read().decode("utf-8")
        periods.add(manifest_period(text, m))
        for k in manifest_keys(text, f"s3://{bucket}/{m}"):
            wanted.setdefault(k, listed[m])
    for k in keys:  # a period that no manifest describes is read as given
        if is_data(k) and k not in wanted and path_period(k) is not None and path_period(k) not in periods:
            wanted[k] = listed[k]
    return [_download(client, bucket, key, workdir, created) for key, created in wanted.items()]


def _list_keys(client: Any, bucket: str, prefix: str, url: str) -> dict[str, datetime]:
    """Keys under the prefix, sorted, with their LastModified (naive UTC)."""
    import botocore.exceptions

    keys: dict[str, datetime] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                modified = obj.get("LastModified")
                stamp = (
                    modified.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
                    if modified
                    else None
                )
                keys[obj["Key"]] = stamp or datetime(1970, 1, 1)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise GpulensError(f"cannot list objects: {exc}", path=url) from exc
    if not keys:
        raise GpulensError("no objects under this prefix", path=url)
    return dict(sorted(keys.items()))


def _download(client: Any, bucket: str, key: str, workdir: Path, created: datetime | None) -> SourceFile:
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
    return SourceFile(target, url, created)


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
    return replace(src, local=target)


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
        refuse_duplicates(found)
        yield [unzip(f, workdir) for f in found]


_COMPRESSED = (".gz", ".zip", ".bz2", ".zst", ".snappy")


def _plain_name(name: str) -> str:
    """`x.csv.gz` and `x.csv` -> `x.csv`: a file and its compressed copy share it."""
    lowered = name.lower()
    for suffix in _COMPRESSED:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _fingerprint(path: Path) -> tuple[int, str]:
    """Size and a digest of the first and last MiB: equal for a file copied under another name,
    without reading a multi-GB part twice."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            digest.update(fh.read())
    return size, digest.hexdigest()


def refuse_duplicates(files: Sequence[SourceFile]) -> None:
    """The same money given twice in one delivery: one file named twice (or inside a folder also
    given), a copy under another name, or a file beside its compressed copy."""
    seen: dict[object, SourceFile] = {}
    for f in files:
        keys: list[tuple[str, object]] = [
            ("is given twice", f.local.resolve()),
            ("is a copy of", _fingerprint(f.local)),
            ("is the same file, compressed or not, as", _plain_name(f.name)),
        ]
        for what, key in keys:
            other = seen.get((what, key))
            if other is not None:
                detail = "" if what == "is given twice" else f" {other.name}"
                raise GpulensError(
                    f"{what}{detail} in this delivery (the same money would count twice); give it once",
                    path=f.name,
                )
            seen[(what, key)] = f


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client from the default credential chain; `endpoint_url` for S3-compatible stores."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint_url)
