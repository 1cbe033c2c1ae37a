"""Run storage: a local folder or any URI pyarrow (and so Ray Train) accepts, such as ``s3://...``.

A run lives in ``{train.storage}/{name}-{hash[:12]}/``; Ray Train writes its checkpoints there
(``storage_path`` = ``train.storage``, run name = the folder name), and the driver keeps the run
record beside them. Every node reads the same URI, so a restarted worker on another node resumes
without a shared filesystem.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


def cache_dir() -> Path:
    """Shared cache for generated/tokenized data: ``DIFFLAB_CACHE`` or ./.cache/difflab."""
    return Path(os.environ.get("DIFFLAB_CACHE", ".cache/difflab")).resolve()


@dataclass(frozen=True)
class Location:
    """A folder in some filesystem: ``uri`` as the user wrote it (absolute for local paths)."""

    uri: str

    @staticmethod
    def of(storage: str) -> "Location":
        """``storage``: a local path (relative to the working folder) or a URI with a scheme."""
        return Location(storage if "://" in storage else str(Path(storage).resolve()))

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def child(self, name: str) -> "Location":
        return Location(posixpath.join(self.uri, name) if not self.is_local else str(Path(self.uri) / name))

    def parent(self) -> "Location":
        return Location(posixpath.dirname(self.uri.rstrip("/")) if not self.is_local else str(Path(self.uri).parent))

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return pafs.FileSystem.from_uri(self.uri)

    def exists(self) -> bool:
        fs, path = self._fs()
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def subfolders(self) -> list[str]:
        """Names of the folders directly inside (empty when this folder does not exist)."""
        fs, path = self._fs()
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)

    def read_text(self) -> str | None:
        """This file's text, or None when it does not exist."""
        fs, path = self._fs()
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")

    def write_text(self, text: str) -> None:
        """Write this file (atomically on a local disk: a reader never sees half of it)."""
        if self.is_local:
            path = Path(self.uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            part.write_text(text)
            os.replace(part, path)
            return
        fs, path = self._fs()
        with fs.open_output_stream(path) as stream:
            stream.write(text.encode("utf-8"))

    def download(self, name: str, target: Path) -> Path:
        """Copy file ``name`` of this folder to ``target`` (a local path); returns ``target``."""
        fs, path = self._fs()
        pafs.copy_files(posixpath.join(path, name), str(target), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return target

    def upload_folder(self, source: Path) -> None:
        """Copy the local folder ``source`` to this location (created; files replaced)."""
        fs, path = self._fs()
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(source), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    def move_to(self, target: "Location") -> None:
        fs, path = self._fs()
        _, to = target._fs()
        if fs.get_file_info(to).type != pafs.FileType.NotFound:
            fs.delete_dir(to)
        fs.move(path, to)

    def delete(self) -> None:
        """Delete this folder and everything in it (callers say what they delete)."""
        fs, path = self._fs()
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)
