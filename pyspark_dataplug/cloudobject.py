"""The engine-agnostic API of the original Dataplug: objects, their indexes, and slices of them.

Same slices as the Spark reader, usable from Dask, Ray, ``multiprocessing`` or a plain loop::

    co = CloudObject.from_s3(FASTQGZip, "s3://genomics/SRR6052133_1.fastq.gz")
    co.preprocess(parallel_config={"backend": "dask"})  # builds the index once (joblib); reuses an up-to-date one
    slices = co.partition(partition_reads_batches, num_batches=200)   # reads only the index
    table = slices[0].get()                             # ranged reads happen here

:class:`CloudDataset` does the same for every object under a prefix or glob, cut as one sequence.
"""

from __future__ import annotations

import inspect
import math
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

#: ``f(cloud_object, ...) -> slices``: what ``partition`` takes (see :func:`by_strategy`, :func:`by_size`)
PartitionFunction = Callable[..., "list[Slice]"]


def _s3_options(s3_config: Mapping[str, Any] | None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key, value in dict(s3_config or {}).items():
        if key not in _S3_CONFIG_KEYS:
            raise OptionError(
                f"s3_config key {key!r} is not supported; valid: {', '.join(_S3_CONFIG_KEYS)} (credentials "
                "come from the standard AWS chain: AWS_ACCESS_KEY_ID, profiles, instance roles)"
            )
        opts[_S3_CONFIG_KEYS[key]] = value
    return opts


def _s3_uris(uris: list[str]) -> list[str]:
    bad = [u for u in uris if not u.startswith("s3://")]
    if bad:
        raise OptionError(f"from_s3 takes s3:// URIs, got {', '.join(map(repr, bad))} (local paths: from_path)")
    return uris


class _Objects:
    """What :class:`CloudObject` and :class:`CloudDataset` share: paths read as one format, with options.

    Cheap to create: nothing is listed or read until :meth:`preprocess`, :meth:`partition` or
    :meth:`dataset` is called.
    """

    def __init__(self, fmt: type[Format] | str, paths: list[str], options: Mapping[str, Any] | None = None) -> None:
        self.format_name = fmt if isinstance(fmt, str) else fmt.name
        self.paths = [normalize_uri(p) for p in paths]
        self.options = {k: v for k, v in dict(options or {}).items() if v is not None}
        self.options["format"] = self.format_name
        self._dataset: Dataset | None = None

    def _raw(self) -> dict[str, Any]:
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in self.options.items()}

    def _check_objects(self, uris: list[str]) -> None:
        """Subclasses refuse what they cannot stand for (a CloudObject is one object)."""

    def preprocess(self, parallel_config: Mapping[str, Any] | None = None, spark: Any = None,
                   force: bool = False) -> BuildSummary:
        """Build the indexes (once: an up-to-date index is kept unless ``force``), and say what was done.

        Parameters
        ----------
        parallel_config : dict, optional
            ``joblib.parallel_config`` arguments the index map tasks run under, as in the seed Dataplug:
            ``{"backend": "dask"}`` (a running ``dask.distributed.Client``'s workers), ``"threading"``,
            ``"ray"`` (with the ``ray`` extra), ``"loky"`` (processes, joblib's default backend). A named
            backend uses all its workers unless ``n_jobs`` says otherwise. Without it, joblib's default: the
            tasks run in this process, one after another (or under an enclosing ``joblib.parallel_config``).
        spark : SparkSession, optional
            Run the build as a Spark job instead (classic or Connect).
        force : bool
            Rebuild even up-to-date indexes. An index is also rebuilt when these options name an
            ``indexSpacing`` or ``gzipSpacing`` other than the one it was built with.

        Examples
        --------
        >>> co.preprocess(parallel_config={"backend": "loky", "n_jobs": 4})  # doctest: +SKIP
        """
        from .index.build import joblib_runner, plan_build, spark_runner

        if spark is not None and parallel_config is not None:
            raise OptionError("preprocess takes parallel_config (joblib) or spark, not both")
        runner = spark_runner(spark) if spark is not None else joblib_runner(parallel_config)
        build = plan_build(self.paths, **self._raw())
        self._check_objects([o.uri for o in build.objects])
        self._dataset = None
        return build.run(runner, force=force)

    def dataset(self) -> Dataset:
        """The objects, their indexes and the read's format, loaded once (``preprocess`` forgets them)."""
        from .plan import open_dataset

        if self._dataset is None:
            dataset = open_dataset(self._raw(), paths=self.paths)
            self._check_objects([o.uri for o in dataset.objects])
            self._dataset = dataset
        return self._dataset

    def units(self, strategy: str | None = None) -> int:
        """What ``strategy`` divides (records, bytes, points, ...) in all indexed objects together."""
        return self.dataset().units(strategy)

    def slices(self, strategy: str | None = None, num_slices: int | None = None,
               slice_bytes: int | None = None) -> list[Slice]:
        """Slices by a named strategy; reads only the indexes.

        Several objects are cut as one sequence (:mod:`.plan`): a batch that runs from the end of one object
        into the next gives one slice in each, so there may be up to one slice more per object than asked.
        """
        parts = self.dataset().plan(partitions=num_slices, strategy=strategy, partition_bytes=slice_bytes)
        return [s for p in parts for s in p]

    def partition(self, strategy: PartitionFunction, /, *args: Any, **kwargs: Any) -> list[Slice]:
        """Dataplug's call: ``co.partition(partition_reads_batches, num_batches=200)``.

        ``strategy`` is positional-only, so a partition function may take a ``strategy`` keyword of its own
        (``partition_sequences_per_chunk(co, 1000, strategy="merge")``).
        """
        return strategy(self, *args, **kwargs)


class CloudObject(_Objects):
    """One object in storage read as ``fmt``.

    Examples
    --------
    >>> from pyspark_dataplug import CloudObject
    >>> from pyspark_dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
    >>> co = CloudObject.from_s3(FASTQGZip, "s3://genomics/SRR6052133_1.fastq.gz")
    >>> co.preprocess(parallel_config={"backend": "dask"})  # doctest: +SKIP
    >>> data_slices = co.partition(partition_reads_batches, num_batches=200)  # doctest: +SKIP
    """

    def __init__(self, fmt: type[Format] | str, uri: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(fmt, [uri], options)
        self.uri = self.paths[0]

    @classmethod
    def from_s3(cls, fmt: type[Format] | str, uri: str, s3_config: Mapping[str, Any] | None = None,
                **options: Any) -> CloudObject:
        """An S3 object; ``s3_config`` takes boto3 client arguments ``endpoint_url`` and ``region_name``.

        Without them, boto3's own configuration applies (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, profiles).
        Credentials come from the standard AWS chain (environment, profile, instance role), never from
        here: slices travel to other processes and must not carry secrets.
        """
        return cls(fmt, _s3_uris([uri])[0], {**options, **_s3_options(s3_config)})

    @classmethod
    def from_path(cls, fmt: type[Format] | str, path: str, **options: Any) -> CloudObject:
        return cls(fmt, path, options)

    def _check_objects(self, uris: list[str]) -> None:
        if len(uris) != 1:
            raise OptionError(f"CloudObject {self.uri} names {len(uris)} objects, not one; read a prefix or a glob "
                              f"with CloudDataset.from_s3 / from_path")

    def __repr__(self) -> str:
        return f"CloudObject<{self.format_name}>({self.uri})"


class CloudDataset(_Objects):
    """Many objects of one format, named by prefixes, globs or a list, indexed and sliced together.

    Slices are cut across the objects as one sequence, so a thousand small objects do not become a
    thousand tiny slices, and one big object is cut as finely as asked.

    Examples
    --------
    >>> from pyspark_dataplug import CloudDataset
    >>> from pyspark_dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
    >>> ds = CloudDataset.from_s3(FASTQGZip, "s3://genomics/run1/")
    >>> ds.preprocess(parallel_config={"backend": "loky"})  # doctest: +SKIP
    >>> data_slices = ds.partition(partition_reads_batches, num_batches=200)  # doctest: +SKIP
    """

    def __init__(self, fmt: type[Format] | str, paths: str | list[str],
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__(fmt, [paths] if isinstance(paths, str) else list(paths), options)

    @classmethod
    def from_s3(cls, fmt: type[Format] | str, uris: str | list[str], s3_config: Mapping[str, Any] | None = None,
                **options: Any) -> CloudDataset:
        """Objects under S3 prefixes or globs (``s3://b/run1/``, ``s3://b/run1/*.fastq.gz``); as
        :meth:`CloudObject.from_s3` for ``s3_config``."""
        paths = _s3_uris([uris] if isinstance(uris, str) else list(uris))
        return cls(fmt, paths, {**options, **_s3_options(s3_config)})

    @classmethod
    def from_path(cls, fmt: type[Format] | str, paths: str | list[str], **options: Any) -> CloudDataset:
        return cls(fmt, paths, options)

    @property
    def uris(self) -> list[str]:
        """The objects the paths name now (listed when first asked)."""
        return [o.uri for o in self.dataset().objects]

    def __repr__(self) -> str:
        return f"CloudDataset<{self.format_name}>({', '.join(self.paths)})"


# ------------------------------------------------------------------------------------- partition functions


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise OptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _partition_function(fname: str, params: list[inspect.Parameter], run: Callable[..., list[Slice]],
                        doc: str) -> PartitionFunction:
    """A function with a real signature (so a wrong keyword is Python's usual TypeError, and ``help`` shows it)."""
    sig = inspect.Signature([inspect.Parameter("cloud_object", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])

    def partition(*args: Any, **kwargs: Any) -> list[Slice]:
        unknown = sorted(set(kwargs) - set(sig.parameters))
        if unknown:  # before missing ones, as Python says it: the keyword meant for another function is the news
            raise TypeError(f"{fname}() got an unexpected keyword argument {unknown[0]!r}; it takes "
                            f"{', '.join(list(sig.parameters)[1:])}")
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return run(**bound.arguments)

    partition.__signature__ = sig  # type: ignore[attr-defined]
    partition.__name__ = partition.__qualname__ = fname
    partition.__doc__ = doc
    return partition


def _params(required: str, accepted: Mapping[str, Any] | None) -> list[inspect.Parameter]:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return [inspect.Parameter(required, kind),
            *(inspect.Parameter(k, kind, default=v) for k, v in dict(accepted or {}).items())]


def by_strategy(name: str, count: str = "num_batches", *, squared: bool = False,
                accepts: Mapping[str, Any] | None = None) -> PartitionFunction:
    """A Dataplug-style partition function ``f(cloud_object, <count>)``: that many slices by strategy ``name``.

    ``squared``: ``count`` slices along each axis, ``count ** 2`` in all (Dataplug's COG ``n_splits``).
    ``accepts``: Dataplug parameters (with their defaults) that change nothing here, taken so that code
    written for Dataplug runs, e.g. the ``padding`` its text slices read past their end to find a whole
    word: slices here are cut at exact record boundaries from the index.
    """

    def run(cloud_object: _Objects, **args: Any) -> list[Slice]:
        n = _positive(count, args[count])
        return cloud_object.slices(strategy=name, num_slices=n * n if squared else n)

    shape = f"``{count}`` x ``{count}``" if squared else f"``{count}``"
    return _partition_function(f"partition_{name}_batches", _params(count, accepts), run,
                               f"{shape} slices by the {name!r} strategy (fewer when there are fewer units; never "
                               "empty ones).")


def by_size(name: str, size: str, *, remainder: bool = False,
            accepts: Mapping[str, Any] | None = None) -> PartitionFunction:
    """A Dataplug-style partition function ``f(cloud_object, <size>)``: slices of at most ``size`` units each.

    Units are the strategy's (records, bytes, ...); slices are as equal as the units allow, so there are
    ``ceil(units / size)`` of them. ``remainder`` adds Dataplug's ``strategy`` parameter: ``"expand"`` (that
    count) or ``"merge"`` (``floor(units / size)`` slices, the remainder spread over them, so slices may
    hold a little more than ``size``). Byte-based strategies cut at index points, so their sizes are near
    ``size``, not exact.
    """

    def run(cloud_object: _Objects, **args: Any) -> list[Slice]:
        per = _positive(size, args[size])
        how = args.get("strategy", "expand")
        if how not in ("expand", "merge"):
            raise OptionError(f"strategy must be 'expand' or 'merge', got {how!r}")
        units = cloud_object.units(name)
        if units == 0:
            return []
        n = math.ceil(units / per) if how == "expand" else max(1, units // per)
        return cloud_object.slices(strategy=name, num_slices=n)

    accepted = {**({"strategy": "expand"} if remainder else {}), **dict(accepts or {})}
    return _partition_function(f"partition_{name}_per_{size}", _params(size, accepted), run,
                               f"Slices of at most ``{size}`` units of the {name!r} strategy each, as equal as "
                               "they can be.")
