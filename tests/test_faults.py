"""Faults between the reader and S3, on every path a read or a build takes: nothing lost, nothing twice.

Every request goes through :class:`flaky_proxy.FlakyProxy`, a real HTTP proxy in front of moto that answers
as a misbehaving S3 would (503 SlowDown bursts, 500s, connections reset before the first byte or cut in the
middle of a body, bodies complete by HTTP's rules but short, slow first bytes, 403 on chosen keys). Each
step runs once clean and once under a schedule of one fault kind, and must give the same result with
exactly one more request per fault injected: each fault was met, retried once, and cost no row.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from typing import Any

import pytest
from data import fastq_reference, make_fastq
from flaky_proxy import TRANSIENT, FlakyProxy, Schedule

from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import DataplugError, ObjectNotFoundError, StaleIndexError, StorageError
from pyspark_dataplug.index.store import IndexStore
from pyspark_dataplug.plan import storage_options
from pyspark_dataplug.storage import expand, get_storage

#: per fault kind, what the matrix injected and survived (rows lost / duplicated are asserted to be 0);
#: ``pytest -s`` prints it, and the README's Reliability table quotes it
TALLY: dict[str, list[int]] = {}


@pytest.fixture(scope="module", autouse=True)
def _show_tally() -> Any:
    yield
    for kind, (injected, survived) in sorted(TALLY.items()):
        print(f"\nfault {kind}: injected {injected}, survived {survived}, rows lost 0, rows duplicated 0")


def _options(endpoint: str, **extra: str) -> dict[str, str]:
    return {"endpointUrl": endpoint, "gzipSpacing": "64k", **extra}


def _rows(co: CloudObject, n: int) -> list[tuple]:
    return [tuple(r.values()) for s in co.slices(num_slices=n, strategy="records") for r in s.get().to_pylist()]


#: the paths of a read and a build: name -> (requests the schedule may fault, the step's result)
STEPS: dict[str, tuple[str, Callable[[str, str, str], Any]]] = {
    "listing": ("list", lambda ep, prefix, uri: [o.uri for o in expand([f"{prefix}/*.fastq.gz"],
                                                                         storage_options(_options(ep)))]),
    "head": ("head", lambda ep, prefix, uri: get_storage(uri, storage_options(_options(ep))).info(uri).size),
    "build": ("any", lambda ep, prefix, uri: CloudObject("fastq", uri, _options(ep)).preprocess(force=True).records),
    "index load": ("index", lambda ep, prefix, uri: IndexStore(None, storage_options(_options(ep)))
                   .load(_info(ep, uri), "fastq").records),
    "slice GETs": ("data-get", lambda ep, prefix, uri: _rows(CloudObject("fastq", uri, _options(ep)), 5)),
    "part GETs": ("data-get", lambda ep, prefix, uri: _rows(
        CloudObject("fastq", uri, _options(ep, partSize="16k", partsInFlight="3")), 3)),
}


def _info(endpoint: str, uri: str) -> Any:
    return get_storage(uri, storage_options(_options(endpoint))).info(uri)


@pytest.fixture(scope="module")
def fastq_object(s3_server: str) -> tuple[str, str, list[tuple]]:
    import uuid

    from conftest import BUCKET

    data = make_fastq(3000, seed=121)
    prefix = f"s3://{BUCKET}/faults-{uuid.uuid4().hex[:8]}"
    for name, body in (("run.fastq.gz", gzip.compress(data)), ("other.fastq.gz", gzip.compress(data[:5000]))):
        _put(s3_server, f"{prefix}/{name}", body)
    uri = f"{prefix}/run.fastq.gz"
    CloudObject("fastq", uri, _options(s3_server)).preprocess()
    # a second build, so every later rebuild deletes as many files (those two builds back): the same requests
    CloudObject("fastq", uri, _options(s3_server)).preprocess(force=True)
    return prefix, uri, fastq_reference(data)


@pytest.mark.parametrize("kind", TRANSIENT)
@pytest.mark.parametrize("step", list(STEPS))
def test_every_path_survives_every_transient_fault(s3_server: str, fastq_object: tuple, step: str, kind: str) -> None:
    prefix, uri, reference = fastq_object
    on, run = STEPS[step]
    with FlakyProxy(s3_server) as proxy:
        proxy.slow_seconds = 0.3  # under readTimeout: a slow first byte is waited for, not retried
        clean = run(proxy.endpoint, prefix, uri)
        clean_requests = len(proxy.requests)
        proxy.schedule = Schedule([kind], every=2, on=on, cap=2)
        faulty = run(proxy.endpoint, prefix, uri)
        proxy.schedule = None
        injected = proxy.injected[kind]
        requests = len(proxy.requests) - clean_requests
    assert faulty == clean
    if isinstance(clean, list) and clean and isinstance(clean[0], tuple):
        assert clean == reference  # the rows are the reference reader's, in order
    assert injected >= 1, f"{step}: the schedule met no request"
    retries = 0 if kind == "slow" else injected
    assert requests == clean_requests + retries, (step, kind, clean_requests, requests, injected)
    tally = TALLY.setdefault(kind, [0, 0])
    tally[0] += injected
    tally[1] += injected


def test_a_throttling_burst_on_every_request_is_waited_out(s3_server: str, fastq_object: tuple) -> None:
    """For 0.8 s every request is refused: the reads back off (full jitter, doubling) and all get through."""
    prefix, uri, reference = fastq_object
    with FlakyProxy(s3_server) as proxy:
        slices = CloudObject("fastq", uri, _options(proxy.endpoint, partSize="16k", partsInFlight="4")).slices(
            num_slices=4, strategy="records")
        proxy.throttled_until = time.monotonic() + 0.8
        rows = [tuple(r.values()) for s in slices for r in s.get().to_pylist()]
        injected = proxy.injected["slowdown"]
    assert rows == reference
    assert injected >= 4  # the parts in flight were all refused at least once
    TALLY.setdefault("slowdown", [0, 0])
    TALLY["slowdown"][0] += injected
    TALLY["slowdown"][1] += injected


def test_a_stall_longer_than_read_timeout_is_retried(s3_server: str, fastq_object: tuple) -> None:
    prefix, uri, reference = fastq_object
    with FlakyProxy(s3_server) as proxy:
        proxy.slow_seconds = 2.5
        proxy.faults = ["slow"]
        proxy.fault_on = "data-get"
        t0 = time.perf_counter()
        rows = _rows(CloudObject("fastq", uri, _options(proxy.endpoint, readTimeout="1")), 3)
        took = time.perf_counter() - t0
        data_gets = [r for m, p, r in proxy.requests if m == "GET" and ".dataplug/" not in p and r]
    assert rows == reference
    assert not proxy.faults
    assert len(data_gets) == 3 + 1  # three slices, one of them asked twice
    assert took < 2.5 + 30  # the stalled attempt was abandoned after readTimeout, not waited out


@pytest.mark.parametrize("on", ["head", "data-get", "index", "list"])
def test_faults_that_never_end_fail_in_bounded_time_naming_object_range_and_cause(
        s3_server: str, fastq_object: tuple, on: str) -> None:
    prefix, uri, _ = fastq_object
    with FlakyProxy(s3_server) as proxy:
        step = {"head": "head", "data-get": "slice GETs", "index": "index load", "list": "listing"}[on]
        co_opts = _options(proxy.endpoint, maxAttempts="4")
        if on == "data-get":  # plan while the endpoint is healthy, then throttle every data request
            slices = CloudObject("fastq", uri, co_opts).slices(num_slices=2, strategy="records")
        proxy.schedule = Schedule(["slowdown"], every=1, on=on, cap=10**9)
        t0 = time.perf_counter()
        with pytest.raises(DataplugError) as err:
            if on == "data-get":
                slices[1].get()
            elif on == "list":
                expand([f"{prefix}/*.fastq.gz"], storage_options(co_opts))
            elif on == "head":
                get_storage(uri, storage_options(co_opts)).info(uri)
            else:
                IndexStore(None, storage_options(co_opts)).load(_info(s3_server, uri), "fastq")
        took = time.perf_counter() - t0
        sent = proxy.injected["slowdown"]
    message = str(err.value)
    assert isinstance(err.value, StorageError), (step, message)
    # the last cause: S3's error code, or only the status for a HEAD (its error has no body)
    assert ("HTTP 503" if on == "head" else "SlowDown") in message and "after 4 attempt" in message, message
    assert (prefix if on == "list" else uri.rsplit("/", 1)[-1]) in message, message
    if on == "data-get":
        assert "[" in message and ")" in message, message  # the byte range the task was reading
    assert sent == 4  # exactly maxAttempts tries, then the error
    assert took < 10  # backoff is bounded: 0.1 + 0.2 + 0.4 s of jitter at most before the 4th attempt


@pytest.mark.parametrize("target", ["data", "index"])
def test_denied_keys_fail_at_once_naming_the_object(s3_server: str, fastq_object: tuple, target: str) -> None:
    prefix, uri, _ = fastq_object
    with FlakyProxy(s3_server) as proxy:
        opts = _options(proxy.endpoint)
        slices = CloudObject("fastq", uri, opts).slices(num_slices=2, strategy="records")
        proxy.deny = {r"/run\.fastq\.gz\.dataplug/" if target == "index" else r"/run\.fastq\.gz$"}
        with pytest.raises(StorageError, match=r"run\.fastq\.gz.*access denied \(AccessDenied\)"):
            if target == "index":
                CloudObject("fastq", uri, opts).slices(num_slices=2, strategy="records")
            else:
                slices[0].get()
        assert proxy.injected["denied"] == 1  # denied is final: never retried


def _put(endpoint: str, uri: str, body: bytes) -> None:
    import boto3

    bucket, key = uri[len("s3://"):].split("/", 1)
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key=key, Body=body)


def test_object_deleted_or_overwritten_between_planning_and_reading(s3_server: str) -> None:
    import uuid

    from conftest import BUCKET

    data = make_fastq(800, seed=122)
    uri = f"s3://{BUCKET}/faults-{uuid.uuid4().hex[:8]}/gone.fastq.gz"
    _put(s3_server, uri, gzip.compress(data))
    opts = _options(s3_server)
    CloudObject("fastq", uri, opts).preprocess()
    slices = CloudObject("fastq", uri, opts).slices(num_slices=3, strategy="records")
    _put(s3_server, uri, gzip.compress(data[: len(data) // 2]))  # another writer replaced it
    with pytest.raises(StaleIndexError, match=r"gone\.fastq\.gz.*changed since it was indexed"):
        slices[1].get()
    import boto3

    bucket, key = uri[len("s3://"):].split("/", 1)
    boto3.client("s3", endpoint_url=s3_server).delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ObjectNotFoundError, match=r"gone\.fastq\.gz.*not found"):
        slices[2].get()
