"""``/wb/reports`` and ``/wb/reports/{name}/{file}``: the analysis reports ``yujing report`` wrote.

Each report is a folder ``<reports_dir>/<name>/`` (report.html, report.pdf, report.json,
manifest.json; pipelines/reports/render.py). The list shows the folders; a file is served
only when its name is a plain file name with an allowed suffix, it lies directly in a
listed folder, and its real path (symlinks resolved) is still inside that folder.
City and county scope: the reports cover the whole city.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from serving.audit import hashed, record
from serving.workbench.core import Viewer, forbidden, not_found, page, viewer, workbench_of
from web.render import LOCAL_ZONE

router = APIRouter(include_in_schema=False)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
MEDIA = {".html": "text/html; charset=utf-8", ".pdf": "application/pdf", ".svg": "image/svg+xml"}


def _root(request: Request) -> Path | None:
    folder = workbench_of(request).settings.reports_dir
    return Path(folder).resolve() if folder is not None and Path(folder).is_dir() else None


def _report(folder: Path) -> dict[str, Any]:
    """What the list shows of one report: its name, title and kind (from its manifest when readable), files."""
    manifest: dict[str, Any] = {}
    try:
        loaded = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in MEDIA and _NAME.match(p.name))
    return {
        "name": folder.name,
        "title": manifest.get("title") if isinstance(manifest.get("title"), str) else None,
        "kind": manifest.get("kind") if isinstance(manifest.get("kind"), str) else None,
        "written": datetime.fromtimestamp(folder.stat().st_mtime, LOCAL_ZONE),
        "files": files,
    }


def _allowed(who: Viewer) -> None:
    if who.scope == "station":
        raise forbidden("分析报告仅对县（区）局和市局开放。")


@router.get("/wb/reports")
def reports_list(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """The reports, newest first."""
    _allowed(who)
    root = _root(request)
    found = []
    if root is not None:
        folders = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / "report.html").is_file()]
        found = sorted((_report(p) for p in folders), key=lambda r: r["written"], reverse=True)
    return page(request, "reports.html", who, reports=found)


@router.get("/wb/reports/{name}/{file}")
def report_file(request: Request, name: str, file: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """One file of a report (html, pdf, svg); anything else, or any path trick, is 404."""
    _allowed(who)
    root = _root(request)
    if root is None or not _NAME.match(name) or not _NAME.match(file) or Path(file).suffix not in MEDIA:
        record(request, report=hashed(f"{name}/{file}"))
        raise not_found("没有该报告文件。")
    folder = (root / name).resolve()
    path = (folder / file).resolve()
    if folder.parent != root or path.parent != folder or not path.is_file():
        record(request, report=hashed(f"{name}/{file}"))
        raise not_found("没有该报告文件。")
    record(request, report=f"{name}/{file}")
    headers = {"content-disposition": f'attachment; filename="{file}"'} if path.suffix == ".pdf" else None
    return FileResponse(path, media_type=MEDIA[path.suffix], headers=headers)
