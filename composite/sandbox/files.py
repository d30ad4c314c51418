"""The one safe way the host touches a sandbox's working directory: reads, listings, writes and
removal that never follow a link the sandboxed code planted, check what they opened, and stay
bounded whatever tree the code built (depth, entry counts, sizes)."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from composite.errors import SandboxError

__all__ = [
    "WorkFile",
    "MAX_READ_BYTES",
    "safe_name",
    "workdir_parts",
    "open_workdir_file",
    "read_workdir_file",
    "list_workdir",
    "write_file_safely",
    "restore_parts",
    "write_workdir_file",
    "remove_tree",
    "chown_tree",
]

MAX_READ_BYTES = 100 * 2**20  # default cap of one host-side read of a workdir file
MAX_LIST_ENTRIES = 1000  # files a listing returns
MAX_LIST_DEPTH = 32  # directory levels a listing descends
MAX_SCAN_ENTRIES = 20_000  # directory entries a listing looks at before it stops

_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = _NOFOLLOW | os.O_DIRECTORY


@dataclass(frozen=True)
class WorkFile:
    """A regular file of the working directory, named by its path relative to it (POSIX form)."""

    path: str
    size: int

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def safe_name(name: str) -> str:
    """The plain file name an upload may use: directories and traversal dropped, printable only."""
    base = str(name).replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if base in ("", ".", "..") or len(base.encode("utf-8")) > 255:
        raise SandboxError(f"invalid file name {name!r}: expected a plain file name such as 'data.csv'")
    return base


def workdir_parts(workdir: Path, name: str | Path) -> list[str]:
    """The components of a path inside workdir (relative, or absolute under workdir); no '..'."""
    rel = Path(name)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(workdir)
        except ValueError:
            raise SandboxError(f"{str(name)!r} is not inside the sandbox workdir") from None
    parts = [p for p in rel.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise SandboxError(f"invalid workdir path {str(name)!r}: expected a path inside the workdir")
    return parts


def _open_dir_chain(root_fd: int, parts: list[str]) -> int:
    """Open the directory root_fd/parts[0]/... one component at a time, never following a link."""
    dirfd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=dirfd)
            os.close(dirfd)
            dirfd = nxt
    except BaseException:
        os.close(dirfd)
        raise
    return dirfd


def open_workdir_file(workdir: Path, name: str | Path) -> int:
    """A read-only descriptor of a regular file inside workdir: opened relative to the workdir,
    no symbolic link followed at any component, checked on the opened descriptor (fstat). Opening
    with O_NONBLOCK keeps a planted FIFO from blocking the host."""
    parts = workdir_parts(workdir, name)
    try:
        root_fd = os.open(workdir, _DIR_FLAGS)
    except OSError as exc:
        raise SandboxError(f"the sandbox workdir cannot be opened: {exc}") from exc
    try:
        dirfd = _open_dir_chain(root_fd, parts[:-1])
        try:
            fd = os.open(parts[-1], _NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dirfd)
        finally:
            os.close(dirfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SandboxError(f"{str(name)!r} is a symbolic link or not a regular file; not read") from exc
        raise SandboxError(f"cannot read {str(name)!r} from the sandbox: {exc.strerror or exc}") from exc
    finally:
        os.close(root_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SandboxError(f"{str(name)!r} is not a regular file; not read")
    return fd


def read_workdir_file(workdir: Path, name: str | Path, max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular workdir file (see open_workdir_file); larger than max_bytes is an
    error, found without reading more than max_bytes + 1 bytes (a sparse 1 TiB file costs nothing)."""
    fd = open_workdir_file(workdir, name)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise SandboxError(f"{str(name)!r} is {size} bytes, larger than the {max_bytes}-byte limit")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SandboxError(f"{str(name)!r} is larger than the {max_bytes}-byte limit")
    return data


def _valid_name(name: str) -> bool:
    """A name that is valid UTF-8 (no surrogate escapes): anything else cannot be shown, stored or
    sent anywhere as text, so it is not listed at all."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scandir_fd(dirfd: int) -> Iterator[os.DirEntry[str]]:
    # scandir on a descriptor: the entries' stat never follows links (DirEntry(follow_symlinks=False))
    with os.scandir(dirfd) as it:
        yield from it


def list_workdir(
    workdir: Path,
    max_entries: int = MAX_LIST_ENTRIES,
    max_depth: int = MAX_LIST_DEPTH,
    max_scan: int = MAX_SCAN_ENTRIES,
) -> list[WorkFile]:
    """Regular files under workdir, breadth first, sorted per directory: hidden names, names that
    are not valid UTF-8, links and special files skipped; at most max_entries files, max_depth levels and max_scan entries
    looked at, so no tree the code builds (deep, wide, looping through links) can stall the host."""
    found: list[WorkFile] = []
    scanned = 0
    try:
        root_fd = os.open(workdir, _DIR_FLAGS)
    except OSError:
        return found
    try:
        queue: deque[tuple[str, ...]] = deque([()])
        while queue and len(found) < max_entries and scanned < max_scan:
            rel = queue.popleft()
            try:
                dirfd = _open_dir_chain(root_fd, list(rel))
            except OSError:
                continue
            try:
                entries = []
                for entry in _scandir_fd(dirfd):
                    scanned += 1
                    if scanned > max_scan:
                        break
                    entries.append(entry)
                entries.sort(key=lambda e: e.name)
                for entry in entries:
                    if entry.name.startswith(".") or not _valid_name(entry.name):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if len(rel) + 1 < max_depth:
                            queue.append((*rel, entry.name))
                    elif stat.S_ISREG(st.st_mode):
                        found.append(WorkFile("/".join((*rel, entry.name)), st.st_size))
                        if len(found) >= max_entries:
                            break
            finally:
                os.close(dirfd)
    finally:
        os.close(root_fd)
    return found


def write_file_safely(directory: Path, name: str, data: bytes, owner: tuple[int, int] | None) -> Path:
    """Write data to directory/name without following links the sandboxed code may have planted:
    write a fresh temporary file (O_EXCL|O_NOFOLLOW, relative to the opened directory), then
    rename it over the name (a link planted under the name is replaced, never written through)."""
    if "/" in name or name in ("", ".", ".."):
        raise SandboxError(f"invalid file name {name!r}: expected a plain file name")
    try:
        dirfd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise OSError(f"the directory {directory} cannot be opened: {exc}") from exc
    try:
        _write_at(dirfd, name, data, owner, str(directory))
    finally:
        os.close(dirfd)
    return directory / name


def _write_at(dirfd: int, name: str, data: bytes, owner: tuple[int, int] | None, where: str) -> None:
    """write_file_safely's core, in the directory open as dirfd."""
    for _ in range(16):
        tmp = f".upload-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if owner is not None:
                    os.fchown(fh.fileno(), *owner)
            os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            # whatever went wrong (disk full, interrupt), do not leave the temporary file behind
            try:
                os.unlink(tmp, dir_fd=dirfd)
            except OSError:
                pass
            raise
        return
    raise OSError(f"could not create a temporary file in {where}")


def restore_parts(name: str) -> list[str]:
    """The components of a relative workdir path to write a kept file back to (hostile input: it comes
    from a database). Refused: absolute paths, '..', '.', empty or hidden components (a '.ipython'
    startup file would run in the kernel), backslashes, control characters, over-long names, more
    than MAX_LIST_DEPTH levels."""
    text = str(name)
    parts = text.split("/")
    problem = ""
    if not text or text.startswith("/") or "\\" in text:
        problem = "not a relative POSIX path"
    elif len(parts) > MAX_LIST_DEPTH:
        problem = f"more than {MAX_LIST_DEPTH} levels deep"
    else:
        for part in parts:
            if part in ("", ".", ".."):
                problem = "an empty, '.' or '..' component"
            elif part.startswith("."):
                problem = f"a hidden component {part!r}"
            elif not part.isprintable() or not _valid_name(part) or len(part.encode("utf-8")) > 255:
                problem = "a component that is not a printable UTF-8 name of at most 255 bytes"
            if problem:
                break
    if problem:
        raise SandboxError(f"invalid workdir path {text[:200]!r} ({problem}): expected a relative path such as "
                           "'data/table.csv'")
    return parts


def write_workdir_file(workdir: Path, name: str, data: bytes, owner: tuple[int, int] | None = None) -> str:
    """Write data to the relative path name inside workdir, making its folders as needed, without
    following any link at any component (a link or a file where a folder should be is an error) and
    replacing, never writing through, whatever sits under the file's name. Returns the relative path."""
    parts = restore_parts(name)
    try:
        dirfd = os.open(workdir, _DIR_FLAGS)
    except OSError as exc:
        raise SandboxError(f"the sandbox workdir cannot be opened: {exc}") from exc
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=dirfd)
            except FileExistsError:
                pass
            else:
                if owner is not None:
                    os.chown(part, *owner, dir_fd=dirfd, follow_symlinks=False)
            nxt = os.open(part, _DIR_FLAGS, dir_fd=dirfd)  # O_NOFOLLOW: a planted link fails here
            os.close(dirfd)
            dirfd = nxt
        _write_at(dirfd, parts[-1], bytes(data), owner, str(workdir))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SandboxError(f"cannot write {name!r}: a component is a link or not a folder; not written") from exc
        raise SandboxError(f"cannot write {name!r} into the sandbox: {exc.strerror or exc}") from exc
    finally:
        os.close(dirfd)
    return "/".join(parts)


def _unlink_entry(dirfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dirfd)
    except IsADirectoryError:
        os.rmdir(name, dir_fd=dirfd)
    except FileNotFoundError:
        pass


def _make_writable(dirfd: int, name: str) -> None:
    # a directory the code made unreadable (chmod 000) under our own uid: root needs no help, and
    # only a directory is changed (checked without following a link)
    if os.geteuid() == 0:
        return
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
            os.chmod(name, 0o700, dir_fd=dirfd)
    except OSError:
        pass


def _empty_dir(root_fd: int, name: str) -> None:
    """Empty root_fd/name: files are unlinked, subdirectories renamed up to root_fd (so the walk
    never goes deeper than one level and holds two descriptors however deep the tree)."""
    try:
        dirfd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except PermissionError:
        _make_writable(root_fd, name)
        dirfd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    try:
        if os.geteuid() != 0:
            try:
                os.fchmod(dirfd, 0o700)
            except OSError:
                pass
        while True:
            names = []
            with os.scandir(dirfd) as it:
                for entry in it:
                    names.append((entry.name, entry.is_dir(follow_symlinks=False)))
                    if len(names) >= 4096:
                        break
            if not names:
                return
            for child, is_dir in names:
                if is_dir:
                    os.rename(child, f".rm-{secrets.token_hex(8)}", src_dir_fd=dirfd, dst_dir_fd=root_fd)
                else:
                    _unlink_entry(dirfd, child)
    finally:
        os.close(dirfd)


def remove_tree(path: str | Path, keep_last: str | None = None) -> bool:
    """Remove a directory tree without recursion and without following links, whatever its depth
    or width. keep_last: an entry of path removed only after everything else (an owner marker,
    so that a removal cut short is retried by the janitor). Returns True if path is gone."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    try:
        root_fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        if os.geteuid() != 0:
            try:
                os.fchmod(root_fd, 0o700)
            except OSError:
                pass
        # a bounded number of passes: each pass removes what it sees and lifts subdirectories
        for _ in range(1_000_000):
            with os.scandir(root_fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it if e.name != keep_last]
            if not entries:
                break
            for name, is_dir in entries:
                try:
                    if is_dir:
                        _empty_dir(root_fd, name)
                    _unlink_entry(root_fd, name)
                except OSError:
                    continue
        if keep_last is not None:
            try:
                _unlink_entry(root_fd, keep_last)
            except OSError:
                pass
    finally:
        os.close(root_fd)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def chown_tree(root: Path, only_uid: int | None, owner: tuple[int, int]) -> None:
    """chown root and everything under it (entries owned by only_uid, if given) to owner, without
    recursion and without following a link the code planted (each directory opened component by
    component, at most 256 levels deep); it runs only while no kernel of the sandbox is alive."""
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return
    try:
        stack: list[tuple[str, ...]] = [()]
        while stack:
            rel = stack.pop()
            try:
                dirfd = _open_dir_chain(root_fd, list(rel))
            except OSError:
                continue
            try:
                with os.scandir(dirfd) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                for name, is_dir in entries:
                    try:
                        if only_uid is None or os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid == only_uid:
                            os.chown(name, *owner, dir_fd=dirfd, follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir and len(rel) < 256:
                        stack.append((*rel, name))
            finally:
                os.close(dirfd)
        if only_uid is None or os.fstat(root_fd).st_uid == only_uid:
            os.fchown(root_fd, *owner)
    finally:
        os.close(root_fd)
