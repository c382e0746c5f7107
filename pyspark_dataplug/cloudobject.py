"""The engine-agnostic API of the original Dataplug: one object, its index, and slices of it.

Same slices as the Spark reader, usable from Dask, Ray, ``multiprocessing`` or a plain loop::

    co = CloudObject.from_s3(FASTQ, "s3://genomics/SRR6052133_1.fastq")
    co.preprocess()                                     # builds the index once; reuses an up-to-date one
    slices = co.partition(partition_reads_batches, num_batches=200)   # reads only the index
    table = slices[0].get()                             # ranged reads happen here
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import OptionError
from .storage import normalize_uri

if TYPE_CHECKING:
    from .formats._base import Format
    from .index.build import BuildSummary
    from .plan import Dataset
    from .slices import Slice

#: keys of Dataplug's ``s3_config`` (boto3 client arguments) that we can honour without carrying secrets
_S3_CONFIG_KEYS = {"endpoint_url": "endpointUrl", "region_name": "awsRegion", "anonymous": "anonymous"}


class CloudObject:
    """One object in storage read as ``fmt``; cheap to create (no I/O until asked)."""

    def __init__(self, fmt: type[Format] | str, uri: str, options: Mapping[str, Any] | None = None) -> None:
        self.format_name = fmt if isinstance(fmt, str) else fmt.name
        self.uri = normalize_uri(uri)
        self.options = {k: v for k, v in dict(options or {}).items() if v is not None}
        self.options["format"] = self.format_name
        self._dataset: Dataset | None = None

    @classmethod
    def from_s3(cls, fmt: type[Format] | str, uri: str, s3_config: Mapping[str, Any] | None = None,
                **options: Any) -> CloudObject:
        """An S3 object; ``s3_config`` takes boto3 client arguments ``endpoint_url`` and ``region_name``.

        Credentials come from the standard AWS chain (environment, profile, instance role), never from
        here: slices travel to other processes and must not carry secrets.
        """
        opts = dict(options)
        for key, value in dict(s3_config or {}).items():
            if key not in _S3_CONFIG_KEYS:
                raise OptionError(
                    f"s3_config key {key!r} is not supported; valid: {', '.join(_S3_CONFIG_KEYS)} (credentials "
                    "come from the standard AWS chain: AWS_ACCESS_KEY_ID, profiles, instance roles)"
                )
            opts[_S3_CONFIG_KEYS[key]] = value
        return cls(fmt, uri, opts)

    @classmethod
    def from_path(cls, fmt: type[Format] | str, path: str, **options: Any) -> CloudObject:
        return cls(fmt, path, options)

    def _raw(self) -> dict[str, Any]:
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in self.options.items()}

    def preprocess(self, force: bool = False, spark: Any = None) -> BuildSummary:
        """Build this object's index (in this process, or as a Spark job if ``spark`` is given).

        An existing up-to-date index is kept unless this object's options name a different ``indexSpacing``
        or ``gzipSpacing`` than it was built with (``force`` rebuilds anyway).
        """
        from .formats import format_class
        from .index.build import build_indexes, requested_build_params, run_tasks_locally, spark_runner
        from .index.store import IndexStore
        from .plan import format_params, parse_read_options, storage_options
        from .storage import get_storage

        name, opts, _ = parse_read_options(self._raw(), paths=[self.uri])
        storage = storage_options(opts)
        cls = format_class(name)
        fmt = cls(format_params(cls, opts))
        store = IndexStore(opts.get("indexLocation"), storage)
        info = get_storage(self.uri, storage).info(self.uri)
        runner = spark_runner(spark) if spark is not None else run_tasks_locally
        self._dataset = None
        return build_indexes(runner, fmt, [info], store, storage, force=force,
                             requested=requested_build_params(fmt, self._raw()))

    def dataset(self) -> Dataset:
        from .plan import open_dataset

        if self._dataset is None:
            self._dataset = open_dataset(self._raw(), paths=[self.uri])
        return self._dataset

    def slices(self, strategy: str | None = None, num_slices: int | None = None,
               slice_bytes: int | None = None) -> list[Slice]:
        """Slices by a named strategy; reads only the index."""
        parts = self.dataset().plan(partitions=num_slices, strategy=strategy, partition_bytes=slice_bytes)
        return [s for p in parts for s in p]

    def partition(self, strategy: Callable[..., list[Slice]], **kwargs: Any) -> list[Slice]:
        """Dataplug's call: ``co.partition(partition_reads_batches, num_batches=200)``."""
        return strategy(self, **kwargs)


def by_strategy(name: str) -> Callable[..., list[Slice]]:
    """A Dataplug-style partitioning function ``f(cloud_object, num_batches)`` for a named strategy."""

    def partition(cloud_object: CloudObject, num_batches: int) -> list[Slice]:
        if int(num_batches) < 1:
            raise OptionError(f"num_batches must be at least 1, got {num_batches}")
        return cloud_object.slices(strategy=name, num_slices=int(num_batches))

    partition.__name__ = f"partition_{name}_batches"
    partition.__doc__ = f"``num_batches`` slices by the {name!r} strategy."
    return partition
