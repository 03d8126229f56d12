"""Durable state: ``xapi-sim serve --state-dir DIR`` (format documented in docs/reliability.md).

Like XAPI's database backend (``ocaml/database/backend_xml.ml`` writes the whole database
atomically, ``redo_log`` streams deltas), the state directory holds

* ``state.json`` -- a full snapshot of the world at journal sequence number ``seq``, written
  atomically (temporary file, fsync, rename, fsync of the directory);
* ``journal.jsonl`` -- one line per committed transaction that changed something kept:
  ``<crc32 as 8 hex digits> <JSON>``, the JSON holding the line's sequence number, the rows
  the transaction changed and the world's layout when that changed. The line is written and
  fsync'd by a commit hook (``store.Transactions.hooks``) while the transaction's databases
  are locked, before anything is published: nothing is ever visible -- to a reply, an event,
  another call -- that is not on disk. A write that fails (a full disk, an I/O error) cuts
  the journal back to its last good line and rolls the whole transaction back; the call
  answers XAPI's error for an unexpected exception (see ``unix_error_text``).
* ``journal.next.jsonl`` -- the journal while a snapshot is being written.

Loading is strict: every complete line must carry a good checksum, the next sequence
number and the right shape. Only bytes after the last newline of the last journal (a write
cut short by a crash: never acknowledged) may be dropped; anything else -- damage in the
middle, a missing ``state.json`` next to a journal, a malformed snapshot -- refuses to load
with one line naming the file and line, and leaves every file as it is. ``repair`` keeps a
backup and cuts a damaged journal at its first bad line. Version 1 directories (lines
without checksums) are read and converted to version 2 at the next start.

Sessions and tasks are not persisted (XAPI's ``PersistNothing``): clients log in again after
a restart, as with a real xapi restart.
"""

from __future__ import annotations

from ..rowcodec import dec, enc  # noqa: F401
from .fileops import (  # noqa: F401
    _OCAML_UNIX_ERRORS,
    FaultyOps,
    FileOps,
    JournalWriteError,
    _fsync_dir,
    frame,
    unix_error_text,
)
from .journal import (  # noqa: F401
    _APPEND,
    COMPACT_BYTES,
    DurableDispatcher,
    Journal,
)
from .layout import (  # noqa: F401
    _fingerprint,
    _hw,
    _norm,
    _unhw,
    layout,
)
from .statedir import (  # noqa: F401
    _backup,
    _cut,
    _orphan_journal,
    _rebuild,
    _require_state,
    _version_of,
    build_world,
    check_dir,
    exists,
    load,
    open_state,
    repair,
)
from .statefile import (  # noqa: F401
    _CRC,
    FORMAT,
    HOST_STATES,
    JOURNAL,
    JOURNAL_NEXT,
    JOURNALS,
    NOT_PERSISTED,
    READABLE_VERSIONS,
    STATE,
    VERSION,
    JournalDamage,
    Scan,
    StateError,
    _Bad,
    _check_entry,
    _check_hw,
    _check_layout,
    _check_row,
    _check_snapshot,
    _check_world,
    _field_types,
    _frames_ok,
    _is_int,
    _parse_line,
    _read,
    _served_releases,
    _short,
    _type_text,
    _value_ok,
    _want,
    scan,
)
