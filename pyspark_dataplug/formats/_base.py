"""The format protocol: everything the Spark layer, the index job and the slice API need from a format.

The core never branches on a format's name. A format says how to *build* its index (map tasks over
descriptors it chooses -- byte chunks of a text file, one sequential pass over a gzip stream, a header
read for LAZ -- and a reduce), how to *plan* (named strategies that cut an index into slices), and how to
*decode* a slice's bytes into Arrow record batches. Planning and decoding are pure: they never touch
storage, which keeps them testable with plain bytes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import MissingDependencyError
from ..options import Opt

if TYPE_CHECKING:
    from types import ModuleType

    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader, Slice
    from ..storage import ObjectInfo, StorageOptions


class Format(ABC):
    """One data format. Instances hold validated read options (``params``), nothing else.

    Class attributes are capabilities and declarations, so callers never probe for
    ``NotImplementedError``.
    """

    name: ClassVar[str]
    #: read options specific to this format (common options are in :mod:`pyspark_dataplug.options`)
    options: ClassVar[tuple[Opt, ...]] = ()
    #: strategy name -> one-line description; the first is the default
    strategies: ClassVar[dict[str, str]] = {}
    #: set for formats whose objects are folders (a MeasurementSet): the file that marks such a folder. Its
    #: ObjectInfo is then the folder's (:func:`~pyspark_dataplug.storage.folder_version`), ``head`` is empty,
    #: and slices read the folder's files, each range carrying its file's version (``ByteRange.etag``).
    folder_marker: ClassVar[str | None] = None
    #: names in such a folder that change without the data changing, left out of its version
    folder_volatile: ClassVar[tuple[str, ...]] = ()
    #: optional modules (from the format's pip extra, see the registry) that each step imports: ``"build"``
    #: for the index job, ``"read"`` for decoding. Checked on the driver before a job starts (:meth:`required`);
    #: the code that imports them uses :func:`need`, which fails with the same message on an executor.
    requirements: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def required(self, step: str) -> tuple[str, ...]:
        """The optional modules ``step`` (``"build"`` or ``"read"``) will import with these params.

        Formats override it when the options decide (a COG read that selects no pixels needs no codec).
        """
        return tuple(self.requirements.get(step, ()))

    def extent(self, index: Index, slice_: Slice) -> tuple[float, float, float, float] | None:
        """A 2-D box ``(xmin, ymin, xmax, ymax)`` holding every row of ``slice_``, from the index and the slice
        alone (no I/O); None for formats whose rows have no place on a map (the default).

        ``dataplug inspect --plot`` draws these boxes, so a user sees how a plan covers the area.
        """
        return None

    # -- schema -------------------------------------------------------------------------------------
    @abstractmethod
    def arrow_schema(self) -> pa.Schema:
        """The format's full row schema (every column it can decode)."""

    def output_schema(self) -> pa.Schema:
        """The schema of the rows a read returns: the full one, or the ``columns`` the read selected.

        :meth:`decode` may yield either; slices select the columns in any case, so a format that skips
        work for unselected columns (``self.params["select"]``) is faster, never different.
        """
        import pyarrow as pa

        full = self.arrow_schema()
        select = self.params.get("select")
        return full if not select else pa.schema([full.field(n) for n in select])

    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        """Params to add once the first object's index (or its first bytes) is known, e.g. CSV columns.

        Called at planning time; the result travels inside every slice, so executors never re-derive it.
        """
        return {}

    # -- index --------------------------------------------------------------------------------------
    def index_params(self) -> dict[str, Any]:
        """The read options an index depends on; an index built with others is not reused."""
        return {}

    def build_params(self) -> dict[str, Any]:
        """The options that shape an index but never the rows read through it (spacings: ``Opt.build``).

        Recorded in the manifest, so a build that names another value knows to rebuild; unlike
        :meth:`index_params`, a read accepts an index built with any of them.
        """
        return {o.name: self.params.get(o.name, o.default) for o in self.options if o.build}

    @abstractmethod
    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        """JSON-able descriptors of map tasks for one object; each runs as one Spark task.

        ``head`` holds the object's first bytes (to sniff compression); ``index_dir`` is where a task may
        write a blob of its own (e.g. gzip windows) that the manifest will name; ``storage`` lets the driver
        read a little more of the object when planning needs it (a CSV's line separator).
        """

    @abstractmethod
    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        """Scan what one descriptor names; return small JSON-able rows for the reduce."""

    def build_followup(self, info: ObjectInfo, rows: list[dict[str, Any]], index_dir: str) -> list[dict[str, Any]]:
        """Descriptors of a second stage of map tasks, planned from the first stage's rows (default none).

        gzip uses it: one task finds the seek points, then many count records between them in parallel.
        """
        return []

    @abstractmethod
    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        """Combine the map rows of one object into its index (exact, whatever the chunking)."""

    @staticmethod
    def push_filters(filters: list[Any]) -> dict[str, Any]:
        """Params that prune a read from the filters Spark pushes (``pyspark.sql.datasource`` filters).

        Spark still applies every filter to the rows, so the params only need to keep every part that
        could hold a matching row. Default: no pruning.
        """
        return {}

    def sidecar_index(self, info: ObjectInfo, storage: StorageOptions) -> Index | None:
        """An index the field already ships next to the object (a FASTA ``.fai``), when it has no own one.

        Called at planning for objects without a dataplug index; None means there is none to use.
        """
        return None

    # -- planning -----------------------------------------------------------------------------------
    @abstractmethod
    def units(self, index: Index, strategy: str) -> int:
        """How many units (records, bytes, ...) the strategy divides in this object."""

    def weight(self, index: Index) -> int:
        """Uncompressed bytes the object holds, used to size partitions from ``partitionBytes``."""
        return int(index.manifest.get("uncompressed_size", index.source.size))

    @abstractmethod
    def slices(self, index: Index, strategy: str, cuts: list[int],
               storage_options: Any) -> list[Slice | list[Slice] | None]:
        """One slice per consecutive pair of unit positions in ``cuts``; None where a pair holds nothing.

        A pair may also give a list of slices: disjoint parts of the object, when pruning dropped what lies
        between them (the units then count only what is read).

        All cuts of one object come in one call, so a cut shared by two neighbouring slices is resolved
        once: no record can fall between them or land in both.
        """

    @abstractmethod
    def scan_slice(self, info: ObjectInfo, storage_options: Any) -> Slice:
        """A slice that reads a whole object without an index (``missingIndex=scan``)."""

    # -- decoding -----------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        """Turn a slice's bytes into record batches, reading them through ``data`` only.

        ``data.read(i)`` gives range ``i`` whole; ``data.pieces(i)`` streams it, so a decoder that
        yields as it goes holds a few pieces in memory, not the slice. Decoders never touch storage.
        """


def install_command(extra: str) -> str:
    """The one line that installs an extra: error messages end with it."""
    return f"pip install 'pyspark-dataplug[{extra}]'"


def _installed(module: str) -> bool:
    if module in sys.modules:  # None there means "import fails" (how tests and embedders hide a module)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_dependency(module: str, extra: str, purpose: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"{purpose} needs the Python module {module!r}, which is not installed. Install it with: "
        f"{install_command(extra)} (on the driver and on every executor)")


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional library, or fail with the ``pip install`` that provides it.

    Format modules import their optional libraries where they use them, never at import time: the base
    install must import and register every format, and only the step that needs a library may fail.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_dependency(module, extra, purpose) from e


def check_installed(fmt: Format, step: str) -> None:
    """Fail before any job starts when this machine lacks a module ``step`` needs (see :meth:`Format.required`)."""
    from . import REGISTRY

    extra = REGISTRY.get(fmt.name, ("", None))[1]
    for module in fmt.required(step):
        if extra and not _installed(module):
            what = "building a {} index" if step == "build" else "reading {}"
            raise missing_dependency(module, extra, what.format(fmt.name))
