"""Reads the files Sluice exported with independent readers and compares every value with
the input records. Called by tests/format_roundtrip.rs with a directory holding
input.jsonl (the produced payloads, in offset order) and cases.json (one entry per export).

Readers: pyarrow (Parquet, CSV), fastavro and pandavro (Avro), Python's csv, json, gzip,
and zstandard. Exits 1 listing every mismatch."""

import csv
import datetime as dt
import gzip
import io
import json
import pathlib
import re
import sys
import zlib

import fastavro
import pandavro
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import zstandard

# Fields whose values disagree in type (or exceed 64 bits) and are kept as JSON text.
JSON_FIELDS = {"mixed", "huge", "beyond"}
# The field that starts as integers and widens to floats.
WIDENED = {"temp"}

problems = []


def fail(case, msg):
    problems.append(f"{case}: {msg}")


def parse_time(s):
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return None


def files(root, suffix):
    out = sorted(p for p in pathlib.Path(root).rglob("*" + suffix) if "_dead_letter" not in p.parts)
    # Offset-named: order by the first offset in the name.
    return sorted(out, key=lambda p: int(p.name.rsplit("-", 2)[1]))


def decompress(data, codec):
    if codec == "gzip":
        # One member, as every reader expects (some read only the first): zlib alone,
        # which stops where the first member ends. gzip's reader, which reads on, must agree.
        one = zlib.decompressobj(wbits=31)
        text = one.decompress(data)
        if not one.eof or one.unused_data:
            raise AssertionError(f"not one whole gzip member: {len(one.unused_data)} bytes after it")
        if gzip.decompress(data) != text:
            raise AssertionError("gzip and zlib read different lines")
        return text
    if codec == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def lookup(record, path):
    v = record
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


# ---------- Parquet / Arrow ----------
def match_arrow(exp, got, t, where, case, json_text=False):
    if exp is None:
        if got is not None:
            fail(case, f"{where}: expected null, got {got!r}")
        return
    if got is None:
        fail(case, f"{where}: expected {exp!r}, got null")
        return
    if json_text and not pa.types.is_string(t):
        return fail(case, f"{where}: a JSON-text field is a {t} column, not a string")
    if pa.types.is_string(t):
        if json_text or not isinstance(exp, str):
            match_json(exp, got, where, case)
        elif got != exp:
            fail(case, f"{where}: {got!r} != {exp!r}")
    elif pa.types.is_int64(t):
        if got != exp or isinstance(exp, bool):
            fail(case, f"{where}: int {got!r} != {exp!r}")
    elif pa.types.is_floating(t):
        if float(exp) != got:
            fail(case, f"{where}: float {got!r} != {exp!r}")
    elif pa.types.is_boolean(t):
        if got is not exp:
            fail(case, f"{where}: bool {got!r} != {exp!r}")
    elif pa.types.is_timestamp(t):
        if t.tz not in ("UTC", "+00:00") or t.unit not in ("ms", "us"):
            fail(case, f"{where}: timestamp type {t} is not UTC millis/micros")
        if got != parse_time(exp):
            fail(case, f"{where}: time {got!r} != {exp!r}")
    elif pa.types.is_list(t):
        if len(got) != len(exp):
            fail(case, f"{where}: list {got!r} != {exp!r}")
        else:
            for i, (e, g) in enumerate(zip(exp, got)):
                match_arrow(e, g, t.value_type, f"{where}[{i}]", case)
    elif pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        for k in exp:
            if k not in names:
                fail(case, f"{where}: field {k!r} was dropped")
        for i in range(t.num_fields):
            f = t.field(i)
            match_arrow(exp.get(f.name), got.get(f.name), f.type, f"{where}.{f.name}", case)
    else:
        fail(case, f"{where}: unexpected type {t}")


def match_json(exp, got, where, case):
    try:
        back = json.loads(got)
    except (TypeError, ValueError):
        fail(case, f"{where}: {got!r} is not JSON text")
        return
    if back != exp or type(back) is not type(exp):
        fail(case, f"{where}: JSON text {got!r} != {exp!r}")


def check_table(case, table, expected, columns):
    """Arrow table rows against the expected records; columns = [(name, path)]."""
    if table.num_rows != len(expected):
        fail(case, f"{table.num_rows} rows, expected {len(expected)}")
        return
    if columns is None:
        names = table.schema.names
        for rec in expected:
            for k in rec:
                if k not in names:
                    fail(case, f"field {k!r} missing from the columns {names}")
                    return
        columns = [(n, [n]) for n in names]
    rows = table.to_pylist()
    for i, (rec, row) in enumerate(zip(expected, rows)):
        for name, path in columns:
            t = table.schema.field(name).type
            match_arrow(lookup(rec, path), row.get(name), t, f"row {i} {name}", case, path[-1] in JSON_FIELDS)


def check_parquet(case, c, expected):
    fs = files(c["lake"], ".parquet")
    if not fs:
        return fail(case, "no parquet files")
    for f in fs:
        pf = pq.ParquetFile(f)
        comp = pf.metadata.row_group(0).column(0).compression
        if comp != c["parquet_codec"]:
            fail(case, f"{f.name}: compression {comp}, expected {c['parquet_codec']}")
        for i in range(len(pf.schema)):
            col = pf.schema.column(i)
            lt = str(col.logical_type)
            if "Timestamp" in lt and ("isAdjustedToUTC=true" not in lt or "nanoseconds" in lt):
                fail(case, f"{col.path}: logical type {lt}")
    table = pa.concat_tables([pq.read_table(f) for f in fs], promote_options="permissive")
    if c.get("expect_types"):
        for name, want in c["expect_types"].items():
            got = str(table.schema.field(name).type)
            if got != want:
                fail(case, f"column {name}: type {got}, expected {want}")
    if c.get("declared_columns"):
        if table.schema.names != c["declared_columns"]:
            fail(case, f"columns {table.schema.names} != declared {c['declared_columns']}")
        columns = [(n, [n]) for n in table.schema.names]
    else:
        columns = None
    check_table(case, table, expected, columns)


# ---------- Avro ----------
def match_avro(exp, got, t, where, case, json_text=False):
    if isinstance(t, list):
        if exp is None:
            if got is not None:
                fail(case, f"{where}: expected null, got {got!r}")
            return
        branch = [b for b in t if b != "null"]
        return match_avro(exp, got, branch[0], where, case, json_text)
    if exp is None:
        if got is not None:
            fail(case, f"{where}: expected null, got {got!r}")
        return
    tname = t if isinstance(t, str) else t.get("type")
    logical = t.get("logicalType") if isinstance(t, dict) else None
    if json_text and tname != "string":
        return fail(case, f"{where}: a JSON-text field is a {tname} column, not a string")
    if logical in ("timestamp-micros", "timestamp-millis"):
        if got != parse_time(exp):
            fail(case, f"{where}: time {got!r} != {exp!r}")
    elif tname == "string":
        if json_text or not isinstance(exp, str):
            match_json(exp, got, where, case)
        elif got != exp:
            fail(case, f"{where}: {got!r} != {exp!r}")
    elif tname == "long":
        if got != exp or isinstance(exp, bool):
            fail(case, f"{where}: long {got!r} != {exp!r}")
    elif tname == "double":
        if got != float(exp):
            fail(case, f"{where}: double {got!r} != {exp!r}")
    elif tname == "boolean":
        if got is not exp:
            fail(case, f"{where}: bool {got!r} != {exp!r}")
    elif tname == "array":
        if len(got) != len(exp):
            fail(case, f"{where}: array {got!r} != {exp!r}")
        for i, (e, g) in enumerate(zip(exp, got)):
            match_avro(e, g, t["items"], f"{where}[{i}]", case)
    elif tname == "record":
        match_record(exp, got, t, where, case)
    else:
        fail(case, f"{where}: unexpected Avro type {t}")


def json_key(field):
    m = re.fullmatch(r'JSON field "(.*)"', field.get("doc", ""))
    return m.group(1) if m else field["name"]


def match_record(exp, got, schema, where, case):
    keys = {json_key(f): f for f in schema["fields"]}
    for k in exp:
        if k not in keys:
            fail(case, f"{where}: field {k!r} was dropped")
    for key, f in keys.items():
        match_avro(exp.get(key), got.get(f["name"]), f["type"], f"{where}.{key}", case, key in JSON_FIELDS)


def read_avro(case, c):
    fs = files(c["lake"], ".avro")
    if not fs:
        fail(case, "no avro files")
    out = []
    for f in fs:
        with open(f, "rb") as fh:
            r = fastavro.reader(fh)
            codec = r.metadata.get("avro.codec", "null")
            if codec != c["avro_codec"]:
                fail(case, f"{f.name}: codec {codec}, expected {c['avro_codec']}")
            out.append((f, r.writer_schema, list(r)))
    return out


def check_avro(case, c, expected):
    got = [(schema, rec) for _, schema, recs in read_avro(case, c) for rec in recs]
    if len(got) != len(expected):
        return fail(case, f"{len(got)} records, expected {len(expected)}")
    for i, (rec, (schema, row)) in enumerate(zip(expected, got)):
        match_record(rec, row, schema, f"row {i}", case)


def check_envelope(case, c, expected, headers):
    fields = {"iothub": ["EnqueuedTimeUtc", "Properties", "SystemProperties", "Body"],
              "capture": ["SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Properties", "Body"]}[c["envelope"]]
    read = read_avro(case, c)
    got = [rec for _, _, recs in read for rec in recs]
    if len(got) != len(expected):
        return fail(case, f"{len(got)} records, expected {len(expected)}")
    for f, schema, _ in read:
        if [x["name"] for x in schema["fields"]] != fields:
            fail(case, f"{f.name}: fields {[x['name'] for x in schema['fields']]}")
    for i, (rec, row) in enumerate(zip(expected, got)):
        if json.loads(row["Body"].decode("utf-8")) != rec:
            fail(case, f"row {i}: Body does not decode to the input")
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", row["EnqueuedTimeUtc"]):
            fail(case, f"row {i}: EnqueuedTimeUtc {row['EnqueuedTimeUtc']!r}")
        sysprops = row["SystemProperties"]
        if sysprops.get("connectionDeviceId") != headers[i]["iothub-connection-device-id"]:
            fail(case, f"row {i}: SystemProperties {sysprops}")
        if row["Properties"].get("alert") != headers[i]["alert"]:
            fail(case, f"row {i}: Properties {row['Properties']}")
        if c["envelope"] == "capture" and row["SequenceNumber"] != i:
            fail(case, f"row {i}: SequenceNumber {row['SequenceNumber']}")
    # The seed's own reader snippet, unchanged.
    for f, _, _ in read:
        measurements = pandavro.from_avro(str(f))
        measurements["Body_decoded"] = measurements["Body"].apply(lambda x: bytes(x).decode("utf-8"))
        first = json.loads(measurements["Body_decoded"][0])
        if first not in expected:
            fail(case, f"{f.name}: pandavro's first Body {first!r} is not an input record")


# ---------- CSV ----------
def check_csv(case, c, expected):
    opts = c.get("csv", {})
    delim, quote = opts.get("delimiter", ","), opts.get("quote", '"')
    escape, null = opts.get("escape"), opts.get("null_value", "")
    fs = files(c["lake"], ".csv" + {"gzip": ".gz", "zstd": ".zst"}.get(c["codec"], ""))
    if not fs:
        return fail(case, "no csv files")
    left = list(expected)
    for f in fs:
        text = decompress(f.read_bytes(), c["codec"]).decode("utf-8")
        rd = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar=quote,
                        escapechar=escape, doublequote=escape is None)
        rows = list(rd)
        header, rows_py = rows[0], rows[1:]
        table = pacsv.read_csv(io.BytesIO(text.encode()),
                               parse_options=pacsv.ParseOptions(delimiter=delim, quote_char=quote,
                                                                escape_char=escape or False,
                                                                double_quote=escape is None,
                                                                newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={h: pa.string() for h in header},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False))
        rows_pa = [[r[h] for h in header] for r in table.to_pylist()]
        if rows_py != rows_pa:
            fail(case, f"{f.name}: Python's csv and pyarrow.csv read different rows")
        mine, left = left[:len(rows_py)], left[len(rows_py):]
        check_csv_rows(case, c, f.name, header, rows_py, mine, null)
    if left:
        fail(case, f"{len(left)} records missing")


def check_csv_rows(case, c, fname, header, rows, expected, null):
    """One file's rows (with its own header: files infer their columns) against the input."""
    if "columns" in c:
        columns = [(m["to"], m["from"].split(".")) for m in c["columns"]]
        if header != [n for n, _ in columns]:
            fail(case, f"{fname}: header {header} != mapped names")
    else:
        columns = [(h, [h]) for h in header]
        for rec in expected:
            for k in rec:
                if k not in header:
                    return fail(case, f"{fname}: field {k!r} missing from the header {header}")
    for i, (rec, row) in enumerate(zip(expected, rows)):
        for (name, path), cell in zip(columns, row):
            exp, where = lookup(rec, path), f"{fname} row {i} {name}"
            if exp is None:
                if cell != null:
                    fail(case, f"{where}: expected the null value {null!r}, got {cell!r}")
            elif isinstance(exp, (dict, list)) or path[-1] in JSON_FIELDS:
                match_json(exp, cell, where, case)
            elif isinstance(exp, bool):
                if cell != ("true" if exp else "false"):
                    fail(case, f"{where}: {cell!r} != {exp!r}")
            elif isinstance(exp, (int, float)):
                if float(cell) != float(exp) or (isinstance(exp, int) and path[-1] not in WIDENED and int(cell) != exp):
                    fail(case, f"{where}: {cell!r} != {exp!r}")
            elif parse_time(exp) is not None and parse_time(cell) is not None:
                if parse_time(exp) != parse_time(cell):
                    fail(case, f"{where}: time {cell!r} != {exp!r}")
            elif cell != exp:
                fail(case, f"{where}: {cell!r} != {exp!r}")


# ---------- NDJSON ----------
def check_ndjson(case, c, expected):
    fs = files(c["lake"], ".json" + {"gzip": ".gz", "zstd": ".zst"}.get(c["codec"], ""))
    got = []
    for f in fs:
        got += [json.loads(l) for l in decompress(f.read_bytes(), c["codec"]).decode().splitlines() if l]
    if got != expected:
        fail(case, f"{len(got)} records differ from the {len(expected)} input records")


def main():
    work = pathlib.Path(sys.argv[1])
    records = [json.loads(l) for l in (work / "input.jsonl").read_text().splitlines()]
    headers = [json.loads(l) for l in (work / "headers.jsonl").read_text().splitlines()]
    cases = json.loads((work / "cases.json").read_text())
    for name, c in cases.items():
        before = len(problems)
        expected = [r for r in records if c.get("keep") is None or r["seq"] % c["keep"] != 0]
        kind = c["format"]
        try:
            if kind == "avro" and c.get("envelope"):
                check_envelope(name, c, expected, headers)
            else:
                {"parquet": check_parquet, "avro": check_avro, "csv": check_csv, "ndjson": check_ndjson}[kind](name, c, expected)
        except Exception as e:  # a reader refusing the file is a finding, not a crash
            fail(name, f"{type(e).__name__}: {e}")
        print(f"{name:24} {'ok' if len(problems) == before else 'FAILED'} ({len(expected)} records)")
        for p in problems[before:before + 8]:
            print("  " + p)
    sys.exit(1 if problems else 0)


main()
