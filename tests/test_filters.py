"""The --only filter language: parsing (good and bad input), canonical text, matching."""

import pytest

from infersweep.case import Case
from infersweep.grid.filters import FilterError, MATCH_ALL, Filter, parse_filter, select
from infersweep.results.result import Result


def case(backend="torch", device="cpu", precision="fp32", size=224, batch=8, data="synthetic",
         scope="compute", options="", model="resnet18", weights="random(seed=0)"):
    return Case(model, weights, backend, device, precision, size, batch, data, scope, options)


# text -> canonical text (aliases resolved, spaces dropped, options pairs sorted)
CANONICAL = [
    ("backend=onnxruntime,batch>=16", "backend=onnxruntime,batch>=16"),
    ("precision!=fp32", "precision!=fp32"),
    ("size<512", "size<512"),
    ("device=cuda", "device=cuda"),
    ("backend=torch|onnxruntime", "backend=torch|onnxruntime"),
    (" Image_Size == 224 , batch_size <= 8 ", "size=224,batch<=8"),
    ("BATCH>1", "batch>1"),
    ("size=224|256|224", "size=224|256"),  # repeated values dropped
    ("options=mode=max-autotune,channels_last=true,size>=224",
     "options=channels_last=true,mode=max-autotune,size>=224"),
    ("options=", "options="),
    ('weights="ckpt,v2.pt"|plain.pt', 'weights="ckpt,v2.pt"|plain.pt'),
    ("status=ok|none", "status=ok|none"),
    ("scope=e2e,data=samples,model=resnet50", "scope=e2e,data=samples,model=resnet50"),
]


@pytest.mark.parametrize("text,canonical", CANONICAL)
def test_canonical_text_round_trips(text, canonical):
    parsed = parse_filter(text)
    assert str(parsed) == canonical
    assert parse_filter(canonical) == parsed
    hash(parsed)  # frozen: usable as a dict key


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_filter_matches_everything(text):
    flt = parse_filter(text)
    assert flt == MATCH_ALL and flt.empty and str(flt) == ""
    assert flt.matches(case()) and flt.matches(case(device="cuda", batch=1), status="crashed")


# text -> fragments the message must contain (the bad part, and what is allowed)
BAD = [
    ("backend=torch,onnxruntime", ["'onnxruntime' is not a condition",
                                   "backend=torch|onnxruntime"]),
    ("bakend=torch", ["unknown field 'bakend'", "did you mean backend", "model, weights, backend"]),
    ("precision<fp16", ["'precision<fp16'", "applies to size and batch only"]),
    ("backend>=torch", ["'backend>=torch'", "applies to size and batch only"]),
    ("size<abc", ["'size<abc'", "whole numbers", "'abc'"]),
    ("batch=8|x", ["whole numbers", "'x'"]),
    ("size<224|256", ["| (any of) works with = and != only"]),
    ("device=gpu", ["unknown device 'gpu'", "allowed: cpu, cuda"]),
    ("precision=fp64", ["unknown precision 'fp64'", "fp32", "bf16"]),
    ("scope=all", ["unknown scope 'all'", "compute", "e2e"]),
    ("status=okay", ["unknown status 'okay'", "ok, failed", "none"]),
    ("backend=", ["no value for backend"]),
    ("backend=torch|", ["no value for backend"]),
    ("a", ["'a' is not a condition", "FIELD OP VALUE"]),
    ("batch>=16,32", ["'32' is not a condition"]),
    ("backend=torch,,size=224", ["empty condition"]),
    ("backend=torch,", ["empty condition"]),
    ('weights="abc', ["unterminated \" quote"]),
    ('backend="to"rch', ["quote a whole value"]),
    ("options=channels_last", ["KEY=VALUE pairs", "'channels_last' is not one"]),
    ("size=>224", ["size takes whole numbers", "'>224'"]),
]


@pytest.mark.parametrize("text,fragments", BAD)
def test_bad_filters_name_the_problem(text, fragments):
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert isinstance(info.value, ValueError)  # the CLI catches ValueError -> exit 2
    for fragment in fragments:
        assert fragment in str(info.value)


def test_backend_names_checked_only_when_given():
    assert parse_filter("backend=onnxrutime").matches(case(backend="onnxrutime"))
    with pytest.raises(FilterError, match="unknown backend 'onnxrutime'; allowed: torch, onnx"):
        parse_filter("backend=onnxrutime", backends=["torch", "onnxruntime"])
    assert parse_filter("backend=torch", backends=["torch"]).matches(case())


# filter text, case, expected
MATCHES = [
    ("backend=onnxruntime,batch>=16", case("onnxruntime", batch=16), True),
    ("backend=onnxruntime,batch>=16", case("onnxruntime", batch=8), False),
    ("backend=onnxruntime,batch>=16", case("torch", batch=32), False),
    ("precision!=fp32", case(precision="fp16"), True),
    ("precision!=fp32", case(precision="fp32"), False),
    ("precision!=fp32|bf16", case(precision="bf16"), False),
    ("precision!=fp32|bf16", case(precision="fp16"), True),
    ("size<512", case(size=448), True),
    ("size<512", case(size=512), False),
    ("size<=512", case(size=512), True),
    ("size>224", case(size=224), False),
    ("size>=224,size<=256", case(size=256), True),
    ("size>=224,size<=256", case(size=320), False),
    ("device=cuda", case(device="cuda"), True),
    ("device=cuda", case(device="cpu"), False),
    ("backend=torch|onnxruntime", case("onnxruntime"), True),
    ("backend=torch|onnxruntime", case("torch-compile"), False),
    ("batch=1|32", case(batch=32), True),
    ("batch=1|32", case(batch=8), False),
    ("image_size=224", case(size=224), True),
    ("model=resnet50", case(), False),
    ("data=synthetic,scope=compute", case(), True),
    ("scope=e2e", case(), False),
    ('weights="ckpt,v2.pt"', case(weights="ckpt,v2.pt"), True),
    # options: the listed pairs must all be there; others may be too
    ("options=channels_last=true", case(options="channels_last=true"), True),
    ("options=channels_last=true", case(options="channels_last=false"), False),
    ("options=mode=max-autotune", case(options="cudagraphs=auto,mode=max-autotune"), True),
    ("options=mode=max-autotune,cudagraphs=auto,batch=8",
     case(options="channels_last=false,cudagraphs=auto,mode=max-autotune"), True),
    ("options=mode=max-autotune,cudagraphs=on", case(options="cudagraphs=auto,mode=max-autotune"),
     False),
    ("options=channels_last=true|mode=default", case(options="mode=default"), True),
    ("options=", case(options=""), True),
    ("options=", case(options="channels_last=false"), False),
    ("options!=channels_last=true", case(options="channels_last=false"), True),
    ("options!=channels_last=true", case(options="channels_last=true"), False),
]


@pytest.mark.parametrize("text,c,expected", MATCHES)
def test_matching(text, c, expected):
    assert parse_filter(text).matches(c) is expected


def test_status_is_the_stored_status_and_none_without_one():
    ok, failed = parse_filter("status=ok"), parse_filter("status!=ok")
    assert ok.matches(case(), status="ok") and not ok.matches(case(), status="crashed")
    assert not ok.matches(case())  # no stored result: status is `none`, not ok
    assert failed.matches(case()) and failed.matches(case(), status="timeout")
    assert not failed.matches(case(), status="ok")
    assert parse_filter("status=none").matches(case())
    assert not parse_filter("status=none").matches(case(), status="ok")
    assert parse_filter("status=failed|crashed|oom").matches(case(), status="oom")


def test_fields_and_conditions_on_a_field():
    flt = parse_filter("backend=torch,batch_size>=8,batch<64,status=ok")
    assert flt.fields == {"backend", "batch", "status"}
    assert [str(c) for c in flt.on("batch_size")] == ["batch>=8", "batch<64"]
    assert isinstance(flt, Filter)


def test_flat_rows_match_like_cases():
    row = Result(case("onnxruntime", batch=16), "ok", samples_ms=[1.0] * 5).row()
    assert parse_filter("backend=onnxruntime,batch>=16,status=ok").matches(row)
    assert not parse_filter("status=failed").matches(row)
    assert not parse_filter("size>224").matches(row)


def test_select_results():
    results = [Result(case(batch=b), s) for b, s in ((1, "ok"), (8, "crashed"), (32, "ok"))]
    assert [r.case.batch_size for r in select(results, parse_filter("status=ok"))] == [1, 32]
    assert [r.case.batch_size for r in select(results, parse_filter("batch>1"))] == [8, 32]
    assert select(results, None) == results and select(results, MATCH_ALL) == results
