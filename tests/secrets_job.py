"""A whole session with distinctive credentials in the environment, dumping everything a secret could leak into.

Run by tests/test_security.py as a subprocess (``python secrets_job.py OUT.json``) so the Spark JVM and its
Python workers start with these credentials, and Spark's own log output (this process's stderr) is captured by
the parent. Writes ``{"texts": {name: text}, "signed": [...], "anonymous": [...]}``: ``texts`` are searched for
the secrets; ``signed`` and ``anonymous`` are the request headers (and targets) the S3 endpoint saw.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from flaky_proxy import FlakyProxy  # noqa: E402

DATA, INDEXES = "secrets-data", "secrets-indexes"
OBJECTS = {
    "reads.txt": (b"".join(b"line %d\n" % i for i in range(500)), "text", 500),
    "table.csv": (b"".join(b"%d,x%d\n" % (i, i) for i in range(300)), "csv", 300),
    "reads.fastq": (b"".join(b"@r%d\nACGT\n+\nIIII\n" % i for i in range(200)), "fastq", 200),
}


def main(out_path: str) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    texts: dict[str, str] = {}
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("pyspark_dataplug").setLevel(logging.DEBUG)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    for b in (DATA, INDEXES):
        s3.create_bucket(Bucket=b)
    for name, (data, _, _) in OBJECTS.items():
        s3.put_object(Bucket=DATA, Key=name, Body=data, ACL="public-read")
    s3.put_object(Bucket=DATA, Key="denied.txt", Body=b"no\n")

    from pyspark.sql import SparkSession

    import pyspark_dataplug
    from pyspark_dataplug.cloudobject import CloudObject
    from pyspark_dataplug.datasource import DataplugReader
    from pyspark_dataplug.index.build import build_index

    spark = (SparkSession.builder.master("local[2]").appName("dataplug-secrets")
             .config("spark.ui.enabled", "true").config("spark.ui.port", "0")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("INFO")
    pyspark_dataplug.register(spark)

    with FlakyProxy(f"http://{host}:{port}") as proxy:
        opts = {"endpointUrl": proxy.endpoint, "indexLocation": f"s3://{INDEXES}/idx"}

        # signed: index builds and reads of three formats, plans, slices, partitions
        for name, (_, fmt, rows) in OBJECTS.items():
            uri = f"s3://{DATA}/{name}"
            texts[f"build {name}"] = repr(build_index(spark, uri, format=fmt, **opts))
            df = spark.read.format("dataplug").options(format=fmt, **opts).load(uri)
            assert df.count() == rows, (name, rows)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                df.explain(extended=True)
            texts[f"explain {name}"] = out.getvalue()
            texts[f"queryExecution {name}"] = df._jdf.queryExecution().toString()
            texts[f"rows {name}"] = repr(df.limit(5).collect())
            view = "v_" + name.replace(".", "_")
            spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {view} USING dataplug OPTIONS (path '{uri}', "
                      f"format '{fmt}', endpointUrl '{proxy.endpoint}', indexLocation '{opts['indexLocation']}')")
            count = spark.sql(f"SELECT count(*) FROM {view}")
            texts[f"sql plan {name}"] = count._jdf.queryExecution().toString()
            assert count.collect()[0][0] == rows
            slices = CloudObject.from_s3(fmt, uri, s3_config={"endpoint_url": proxy.endpoint},
                                         indexLocation=opts["indexLocation"]).slices()
            texts[f"slices {name}"] = repr(slices) + repr([pickle.dumps(s) for s in slices])
            from pyspark import cloudpickle

            reader = DataplugReader({"path": uri, "format": fmt, **opts}, {})
            parts = reader.partitions()
            texts[f"partitions {name}"] = repr(cloudpickle.dumps(reader)) + repr(
                [cloudpickle.dumps(p) for p in parts])
        signed = list(proxy.headers)

        # errors: a missing object, a denied one (403 from the endpoint)
        proxy.deny = {"denied"}
        for what, uri in (("missing", f"s3://{DATA}/nope.txt"), ("denied", f"s3://{DATA}/denied.txt")):
            for fallback in ("error", "scan"):
                try:
                    spark.read.format("dataplug").options(format="text", missingIndex=fallback, **opts).load(
                        uri).count()
                    texts[f"error {what} {fallback}"] = "no error"
                except Exception as e:  # noqa: BLE001 - the message is what is checked
                    texts[f"error {what} {fallback}"] = f"{type(e).__name__}: {e}"
            try:
                build_index(spark, uri, format="text", **opts)
                texts[f"build error {what}"] = "no error"
            except Exception as e:  # noqa: BLE001
                texts[f"build error {what}"] = f"{type(e).__name__}: {e}"
        proxy.deny = set()

        # the CLI with --debug (traceback included), on a missing and a denied object
        for what in ("nope.txt", "denied.txt"):
            proxy.deny = {"denied"}
            cli = subprocess.run([sys.executable, "-m", "pyspark_dataplug.cli", "--debug", "index", "--format",
                                  "text", "--endpoint-url", proxy.endpoint, f"s3://{DATA}/{what}"],
                                 capture_output=True, text=True, timeout=300)
            texts[f"cli --debug {what}"] = cli.stdout + cli.stderr
            proxy.deny = set()

        # anonymous: a public object read and indexed (into another bucket) with the credentials still set
        first = len(proxy.headers)
        anon = {**opts, "anonymous": "true", "indexLocation": f"s3://{INDEXES}/anon"}
        uri = f"s3://{DATA}/reads.txt"
        build_index(spark, uri, format="text", **anon)
        # the index's owner publishes it (an unsigned write leaves it private, as S3 would)
        for o in s3.list_objects_v2(Bucket=INDEXES, Prefix="anon/")["Contents"]:
            s3.put_object_acl(Bucket=INDEXES, Key=o["Key"], ACL="public-read")
        df = spark.read.format("dataplug").options(format="text", **anon).load(uri)
        assert df.count() == 500
        anonymous = [{**h, "_target": f"{m} {p}"} for h, (m, p, _) in
                     zip(proxy.headers[first:], proxy.requests[first:], strict=True)]
        signed = [{**h, "_target": f"{m} {p}"} for h, (m, p, _) in
                  zip(signed, proxy.requests[:len(signed)], strict=True)]

    # the Spark UI's REST API
    ui = spark.sparkContext.uiWebUrl
    apps = json.loads(urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=30).read())
    app = apps[0]["id"]
    for page in ("environment", "sql", "jobs", "stages", "executors"):
        texts[f"ui {page}"] = urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/{page}", timeout=30).read(
        ).decode()
    spark.stop()
    server.stop()
    texts["python logging"] = log.getvalue()
    Path(out_path).write_text(json.dumps({"texts": texts, "signed": signed, "anonymous": anonymous}))


if __name__ == "__main__":
    main(sys.argv[1])
