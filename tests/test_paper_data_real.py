"""`make book DATA=paper` end to end on real images, offline.

The paper's two hand radiographs are fetched on request only, so this test stands real images in for them:
matplotlib's (pinned) MRI slice as the reference, the same slice moved by a rotation and a shift and stored upside
down as the paper's template file is, and its photograph of Grace Hopper as the super-resolution page's image.
Every page runs the way ``make book DATA=paper PARAMS=params/quick.yaml`` runs it (the parameter files of the
repository, the paths pointed at the stand-ins), and the report judges the paper's column from their results. A
synthetic stand-in would not catch what real data does to the pages' checks (a Taylor order of 2.85 on the
paper's pair stopped the 01 page once).
"""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The order of make book: the section pages, then the report, which reads their results.
ORDER = ("00_data", "01_ad_costs", "02_multiscale", "03_superresolution", "05_peers", "04_reproduction")


@pytest.mark.slow
def test_every_page_builds_on_real_images_the_paper_data_way(tmp_path, real_image_pngs):
    from PIL import Image

    from tools import pipeline

    data = tmp_path / "data"
    data.mkdir()
    reference = Image.open(real_image_pngs["mri"]).convert("L")
    moved = reference.rotate(12.0, resample=Image.Resampling.BICUBIC, translate=(6, -4))
    reference.save(data / "hands-R.png")
    moved.rotate(180).save(data / "hands-T.png")  # stored upside down, as the paper's template (rotate_180)
    results = tmp_path / "results" / "paper"
    text = (ROOT / "params" / "data-paper.yaml").read_text()
    text = (text.replace("../data/paper/hands-R.jpg", str(data / "hands-R.png"))
            .replace("../data/paper/hands-T.jpg", str(data / "hands-T.png"))
            .replace("../_build/results/paper", str(results)))
    params = yaml.safe_load(text)
    # smaller than the quick preview where a page's cost is in repetitions rather than in what the data do
    params["01_ad_costs"] |= {"n_runs": 3, "comparison_n_runs": 2, "time_budget_s": 0.1}
    params["05_peers"] |= {"capture_angles": [0.0, 90.0]}
    params["03_superresolution"]["reference_path"] = real_image_pngs["grace_hopper"]
    params["04_reproduction"] |= {"paper_results_dir": str(results), "results_dir": str(tmp_path / "synthetic")}
    leftover = [(stem, k, v) for stem, entries in params.items() for k, v in entries.items()
                if isinstance(v, str) and v.startswith("../")]
    assert not leftover, leftover  # nothing of the repository's data or results is read or written
    data_params = tmp_path / "data-real.yaml"
    data_params.write_text(yaml.safe_dump(params))

    executed = tmp_path / "executed"
    for stem in ORDER:
        pipeline.execute_notebook(ROOT / "notebooks" / f"{stem}.ipynb", executed / f"{stem}.ipynb",
                                  params_file=[str(ROOT / "params" / "quick.yaml"), str(data_params)],
                                  cell_timeout=600)
    for stem in ORDER:
        assert (results / f"{stem}.json").is_file(), stem
    assert json.loads((results / "00_data.json").read_text())["source"].startswith("hands-R.png")
    assert json.loads((results / "03_superresolution.json").read_text())["data"] == "grace_hopper.png"
    report = json.loads((results / "report.json").read_text())
    judged = {c["id"] for c in report["claims"] if c["data_set"] == "paper" and c["status"] != "not run"}
    # every page's claims were judged on the stand-ins (the quick settings skip some fractions and CG counts)
    for prefix in ("table1.", "fig2.", "fig3.", "sr.ratio", "peers."):
        assert any(i.startswith(prefix) for i in judged), (prefix, sorted(judged))
    # the 01 page's derivative checks ran on the real pair and printed the orders they measured
    out = (executed / "01_ad_costs.ipynb").read_text()
    assert "order" in out and "AssertionError" not in out
