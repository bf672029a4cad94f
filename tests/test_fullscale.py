"""The full-size driver (``make full-scale``), run at a tiny size: settings checked before any work, the results
record written atomically (``full_scale.json``) and read back by the report."""
import json

import pytest

from imreg_lib.paper import fullscale, report
from imreg_lib.paper.fullscale import FullScaleResults, FullScaleSettings


@pytest.mark.parametrize("values, word", [({"n_scale": 3}, "n_scale"), ({"methods": ["diff_al"]}, "methods"),
                                          ({"methods": "diff_all"}, "methods"), ({"m": 0}, "m"),
                                          ({"variant": "x"}, "variant"), ({"reference_path": "nope.png"},
                                                                          "reference_path")])
def test_bad_settings_are_named(values, word):
    with pytest.raises(ValueError, match=word):
        FullScaleSettings.from_mapping(values)


def test_defaults_are_the_authors_full_size():
    s = FullScaleSettings()
    assert (s.m, s.factor, s.n_templates, s.variant) == (128, 4, 16, "as_coded")
    assert s.methods == ("diff_all", "no_diff", "implicit") and s.gn_iters == 10


def test_settings_are_a_record_with_the_methods_as_a_tuple():
    s = FullScaleSettings.from_mapping({"m": 16, "methods": ["diff_all"], "lam": 0})
    assert s.methods == ("diff_all",) and isinstance(s.lam, float)
    assert s.to_json()["methods"] == ["diff_all"] and "reference_path" not in s.to_json()  # None: left out
    assert FullScaleSettings.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="methods"):
        FullScaleSettings(methods=())


def test_cli_writes_results_the_report_reads(tmp_path, capsys, real_image_pngs):
    params = tmp_path / "small.yaml"
    params.write_text("m: 16\nfactor: 2\nn_templates: 3\ngn_iters: 2\ncg_iters: 50\n"
                      "methods: [diff_all, no_diff, implicit]\n")
    out = tmp_path / "results" / "full_scale.json"
    assert fullscale.main(["--params", str(params), "--out", str(out), "--no-progress",
                           "--reference-path", real_image_pngs["mri"]]) == 0
    data = json.loads(out.read_text())
    assert set(data["runs"]) == {"diff_all", "no_diff", "implicit"}
    assert data["problem"]["n_params"] == 18 and data["problem"]["source"] == "mri.png"
    for run in data["runs"].values():
        assert 0 < run["rel_error"] < 1 and len(run["rss_mb"]) == len(run["losses"]) <= 2
        assert {"memory_growth_after_second", "parameter_error", "w", "message"} <= set(run)
    assert set(data) == {"settings", "problem", "start", "runs", "floor", "peak_memory_mb", "seconds", "machine"}
    assert not list(out.parent.glob(".*.tmp"))  # written through a temporary file
    assert "full scale (m = 16" in capsys.readouterr().out
    record = FullScaleResults.from_json(data)
    assert record.to_json() == data  # the layout is the record's
    assert record.runs["diff_all"].rel_loss == data["runs"]["diff_all"]["losses"][-1] / data["runs"]["diff_all"][
        "losses"][0]
    assert report.load_results(out.parent, (), optional=("full_scale",))["full_scale"] == record
    claims = {c.id: c for c in report.build_claims({"full_scale": record})}
    assert claims["sr.full_scale"].status in ("beyond the paper", "differs")
    assert claims["sr.full_scale"].ours.startswith("Diff All")


def test_cli_names_a_bad_parameter_file(tmp_path, capsys):
    params = tmp_path / "bad.yaml"
    params.write_text("m: 16\ncg_iter: 5\n")
    with pytest.raises(SystemExit):
        fullscale.main(["--params", str(params), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert "cg_iter" in err and "allowed" in err
