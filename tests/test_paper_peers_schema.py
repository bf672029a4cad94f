"""The records of 05_peers (:mod:`imreg_lib.paper.peers`): the JSON they write is the layout the page wrote as a plain
dict before (the results regression's keys), and they read it back to equal records. No registration runs here."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import imreg_lib as il
from imreg_lib.paper import peers
from tools import regression as rg

REFERENCE = Path(__file__).parent / "references" / "05_peers.json"
SETTINGS = dict(theta_max=1e3, theta_min=1e-3, n_scales=30, gtol=1e-4, gtol_single=1e-7, shrink_factors=[4, 2, 1],
                smoothing_sigmas=[2.0, 1.0, 0.0], sitk_optimizer="regular_step", rotation_search_steps=18,
                capture_angles=[float(a) for a in range(0, 181, 15)], capture_m=32, m_3d=16, angles_3d=[90.0, 30.0],
                capture_images=["mri"], rotations_3d=[[90.0, 0.0], [130.0, 0.0], [130.0, 20.0]])


def _old_layout(runs, capture, angles, runs_3d, *, capture_images=None, capture_3d=None, rotations_3d=(), **extra):
    """The results dict as ``peers.results_record`` built it before the records (its code, verbatim)."""
    fields = ("final_loss", "param_error", "seconds", "iterations", "success")

    def record(run, full=True):
        rec = {k: getattr(run, k) for k in fields}
        if full:
            rec.update(w=list(run.w), stop=run.stop, **run.extra)
        return rec

    out: dict = {"peers": {k: record(r) for k, r in runs.items()}}
    if capture is not None:
        out["capture"] = {"angles": [float(a) for a in angles],
                          **{k: [record(r, full=False) for r in rs] for k, rs in capture.items()}}
    if capture_images:
        out["capture_images"] = {
            name: {"angles": [float(a) for a in angles], "source": entry["source"],
                   **{k: [record(r, full=False) for r in rs] for k, rs in entry["runs"].items()}}
            for name, entry in capture_images.items()}
    if runs_3d is not None:
        out["peers_3d"] = {k: record(r) for k, r in runs_3d.items()}
    if capture_3d is not None:
        out["capture_3d"] = {"rotations": [[float(a) for a in r] for r in rotations_3d],
                             **{k: [record(r, full=False) for r in rs] for k, rs in capture_3d.items()}}
    return out | extra


def _old_options_json(settings: peers.PeersSettings) -> dict:
    """The old ``options_json(comparison_options(...))``: the register options, SimpleITK's settings as a dict."""
    return {"theta_max": settings.theta_max, "theta_min": settings.theta_min, "n_scales": settings.n_scales,
            "gtol": settings.gtol, "gtol_single": settings.gtol_single,
            "settings": dataclasses.asdict(settings.simpleitk)}


def _run(method: str, k: int, known: bool = True) -> peers.PeerRun:
    """A hand-made run: distinct numbers per method and index, a failure every third one."""
    err = 0.05 * (k + 1) + 0.5 * (k % 3 == 2) if known else None
    extra = {} if method.startswith("simpleitk") else {"final_grad_norm": 1e-9 * (k + 1), "n_hessians": 3 + k}
    if method.startswith(("simpleitk_search", "global")):  # as the methods report them (the search's result)
        extra |= {"search_angle_deg": 10.0 * k} | ({"search_evaluations": 37} if method.startswith("simp") else {})
    return peers.PeerRun(method, tuple(0.1 * (i + k) for i in range(6 if "3d" not in method else 12)),
                         1000.0 / (k + 1) + len(method), err, None if err is None else err < peers.SUCCESS_CELLS,
                         0.01 * (k + 1), 5 + k, f"{method} stopped", extra)


def _page_like(known: bool = True):
    """Arguments of the page's call (keywords in its order), with its methods, angles, images and rotations."""
    settings = peers.PeersSettings(**SETTINGS)
    angles = SETTINGS["capture_angles"]
    runs = {m: _run(m, 0, known) for m in peers.METHODS_2D}
    capture = {m: [_run(m, k) for k in range(len(angles))] for m in peers.METHODS_2D + (peers.FROM_TRUTH,)}
    mri = {m: [_run(m, k + 1) for k in range(len(angles))] for m in peers.IMAGE_METHODS + (peers.FROM_TRUTH,)}
    runs_3d = {m: _run(m + "_3d", 1) for m in peers.METHODS_3D}
    capture_3d = {m: [_run(m + "_3d", k) for k in range(3)] for m in ("simpleitk", "global", peers.FROM_TRUTH)}
    kwargs = dict(data="synthetic hand", data_3d="synthetic volume", identity_loss=2034141.1656909664,
                  capture_source="synthetic hand", capture_3d=capture_3d, rotations_3d=SETTINGS["rotations_3d"],
                  capture_images={"mri": {"source": "MRI slice (matplotlib's s1045)", "runs": mri}},
                  identity_loss_3d=4860940.2, export_agreement=0.0007 if known else None,
                  export_file_mse=None if known else (12.5, 1.25), m=32, capture_m=32, m_3d=16,
                  angles_3d=SETTINGS["angles_3d"], settings=settings.options, peak_memory_mb=570.4,
                  machine={"cpu": "x", "cores": 2, "threads": 1, "device": "cpu"})
    return settings, (runs, capture, angles, runs_3d), kwargs


def _json(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("known", [True, False], ids=["synthetic", "user files"])
def test_record_writes_the_old_layout_and_reads_it_back(known):
    settings, args, kwargs = _page_like(known)
    record = peers.PeersResults.from_runs(*args, **kwargs)
    old = _old_layout(*args, **{**kwargs, "settings": _old_options_json(settings)})
    assert _json(record.to_json()) == _json(old)  # same keys, values and nesting
    assert json.dumps(record.to_json()) == json.dumps(old)  # and even the same text: the same order of the keys
    back = peers.PeersResults.from_json(_json(record.to_json()))
    assert back == record
    assert back.peers["simpleitk_search"].extra["search_evaluations"] == 37
    assert back.capture.runs[peers.FROM_TRUTH][2].success is False
    assert back.capture_images["mri"].source.startswith("MRI") and back.settings.settings.rotation_search_steps == 18


def test_optional_parts_are_left_out_as_before():
    runs = {"simpleitk": _run("simpleitk", 0), "global": _run("global", 1, known=False)}
    capture = {"simpleitk": [_run("simpleitk", 0), _run("simpleitk", 1)]}
    for args in ((runs, None, (), None), (runs, capture, (0, 90), None), (runs, capture, (0.0, 90.0), runs)):
        record = peers.PeersResults.from_runs(*args, capture_images={}, export_agreement=None, export_file_mse=None)
        old = _old_layout(*args, capture_images={}, export_agreement=None, export_file_mse=None)
        assert _json(record.to_json()) == _json(old)
        assert peers.PeersResults.from_json(_json(record.to_json())) == record
    # the two export checks are written even when not run (null): the page passes both, one is always None
    assert peers.PeersResults.from_runs(runs, None, (), None).to_json()["export_file_mse"] is None
    with pytest.raises(KeyError, match="export_agreement"):
        peers.PeersResults.from_json({"peers": {}, "export_file_mse": None})


def test_every_reference_key_is_written():
    """The results regression's keys (``peers.<method>.param_error``, ``capture.angles.0``, ``settings.settings.
    shrink_factors.0``, ...) are all among the keys of a record shaped like the page's."""
    _, args, kwargs = _page_like()
    flat = rg.flatten(_json(peers.PeersResults.from_runs(*args, **kwargs).to_json()))
    reference = json.loads(REFERENCE.read_text())["values"]
    assert set(reference) <= set(flat), sorted(set(reference) - set(flat))[:10]
    assert {k for k in flat if k.startswith("settings.")} == {k for k in reference if k.startswith("settings.")}


def test_records_keep_their_shape():
    scores = (peers.PeerScore(1.0, 0.1, 0.5, 3, True),)
    with pytest.raises(ValueError, match="one score per angle"):
        peers.CaptureSweep((0.0, 90.0), {"global": scores})
    with pytest.raises(ValueError, match="one score per rotation"):
        peers.CaptureSweep3D(((90.0, 0.0), (0.0, 30.0)), {"global": scores})
    run = _run("simpleitk_search", 2)
    assert peers.PeerRun.from_json(_json(run.to_json())) == run
    assert run.to_json()["search_angle_deg"] == 20.0  # the extra numbers beside the fields
    assert peers.PeerResult.from_run(run).to_json() == {
        k: v for k, v in _json(run.to_json()).items() if k != "method"}


def test_settings_and_checks():
    settings = peers.PeersSettings(**SETTINGS)
    assert peers.PeersSettings.from_json(_json(settings.to_json())) == settings
    assert settings.rotations_3d[2] == (130.0, 20.0) and settings.capture_images == ("mri",)
    assert settings.options.kwargs["settings"] is not None
    assert dataclasses.replace(settings.simpleitk, rotation_search_steps=None).rotation_search_steps is None
    for key, value, message in (
            ("angles_3d", [90.0, "30"], "angles_3d[1] must be a finite number (degrees), got '30'"),
            ("angles_3d", [-90.0, -math.inf], "angles_3d[1] must be a finite number (degrees), got -inf"),
            ("capture_angles", [math.nan], "capture_angles[0] must be a finite number (degrees), got nan"),
            ("capture_angles", 15.0, "capture_angles must be a non-empty list of finite numbers (degrees), got 15.0"),
            ("capture_m", 32.0, "capture_m must be an integer >= 8, got 32.0"),
            ("capture_images", ["ct"], "capture_images[0] must be 'mri' or 'grace_hopper', got 'ct'"),
            ("smoothing_sigmas", [2.0, -1.0, 0.0], "smoothing_sigmas[1] must be a finite number >= 0, got -1.0"),
            ("rotation_search_steps", 0, "rotation_search_steps must be None or a positive integer, got 0")):
        with pytest.raises(ValueError) as info:
            peers.PeersSettings(**{**SETTINGS, key: value})
        assert str(info.value) == message
    assert peers.PeersSettings(**{**SETTINGS, "angles_3d": [-90.0, -30]}).angles_3d == (-90.0, -30.0)
    assert peers.PeersSettings(**{**SETTINGS, "capture_images": [], "rotations_3d": []}).rotations_3d == ()
    for kwargs, name in (({"iterations": True}, "iterations"), ({"learning_rate": 0}, "learning_rate"),
                         ({"threads": 0}, "threads"), ({"shrink_factors": ()}, "shrink_factors"),
                         ({"search_sigma": -1.0}, "search_sigma")):
        with pytest.raises(ValueError, match=f"^{name}"):
            peers.SimpleITKSettings(**kwargs)
    with pytest.raises(ValueError, match="supersample must be a positive integer, got 0"):
        il.data.synthetic_volume_motion_pair(8, supersample=0)
    with pytest.raises(ValueError, match="m must be at least 4 cells per dimension"):
        il.data.synthetic_volume_motion_pair(3)
