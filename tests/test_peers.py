"""The comparison with SimpleITK: scoring, the 3D pair, the registrations and the verdicts."""

import math

import pytest

import imreg_lib as il
from imreg_lib.paper import peers

pytest.importorskip("SimpleITK")

GOOD = dict(theta_max=1e3, theta_min=1e-3, n_scales=30, gtol=1e-4, gtol_single=1e-7, shrink_factors=[4, 2, 1],
            smoothing_sigmas=[2.0, 1.0, 0.0], sitk_optimizer="regular_step", rotation_search_steps=18,
            capture_angles=[0.0, 90.0], capture_m=32, m_3d=16, angles_3d=[90.0, 30.0])


def test_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="smoothing_sigmas"):
        peers.SimpleITKSettings((4, 2, 1), (2.0, 1.0))
    with pytest.raises(ValueError, match="shrink_factors"):
        peers.SimpleITKSettings((0,), (1.0,))
    with pytest.raises(ValueError, match="optimizer"):
        peers.SimpleITKSettings(optimizer="adam")
    with pytest.raises(ValueError, match="rotation_search_steps"):
        peers.SimpleITKSettings(rotation_search_steps=0)
    with pytest.raises(ValueError, match="capture_angles"):
        peers.PeersSettings(**{**GOOD, "capture_angles": []})
    with pytest.raises(ValueError, match="angles_3d"):
        peers.PeersSettings(**{**GOOD, "angles_3d": [1.0]})
    with pytest.raises(ValueError, match="m_3d"):
        peers.PeersSettings(**{**GOOD, "m_3d": 2})
    pair = il.synthetic_hand_pair(8)
    with pytest.raises(ValueError, match="method must be one of"):
        peers.register(pair, "elastix")
    with pytest.raises(ValueError, match="rotation_search_steps"):
        peers.simpleitk_register(il.data.synthetic_volume_motion_pair(6),
                                 peers.SimpleITKSettings(rotation_search_steps=4))


def test_motion_error_in_cells():
    grid = il.Grid(il.PAPER_OMEGA, (20, 25))  # h = (1, 1)
    w = il.affine_from_geometry(30.0, 1.1, (0.2, 0.1), grid.center())
    assert peers.motion_error(w, w, grid) == 0.0
    shifted = w.clone()
    shifted[4] += 1.5 * grid.h[0]
    assert peers.motion_error(shifted, w, grid) == pytest.approx(1.5)
    assert peers.motion_error(w, None, grid) is None


def test_every_method_recovers_a_small_motion_and_is_scored_by_our_objective():
    pair = il.synthetic_hand_pair(16, motion={"angle_deg": 10.0})
    runs = peers.peer_comparison(pair, n_scales=8)
    assert set(runs) == set(peers.METHODS_2D)
    objective = il.SSDObjective.from_pair(pair)
    for name, run in runs.items():
        assert run.success, (name, run.param_error)
        assert run.final_loss == pytest.approx(float(objective.loss(run.w_tensor(), 1e-3)), rel=1e-12)
        assert run.iterations > 0 and run.seconds > 0
    assert runs["simpleitk_search"].extra["search_evaluations"] == 37


def test_a_large_rotation_defeats_single_scale_and_plain_simpleitk_but_not_the_search():
    pair = il.synthetic_hand_pair(16)  # 172 degrees
    runs = peers.peer_comparison(pair, ("simpleitk", "simpleitk_search", "single_scale"))
    assert runs["single_scale"].success is False and runs["simpleitk"].success is False
    assert runs["simpleitk_search"].success is True
    assert abs(runs["simpleitk_search"].extra["search_angle_deg"]) > 150


def test_user_pair_without_truth_has_no_error():
    hand = il.synthetic_hand_pair(12, motion={"angle_deg": 5.0})
    pair = il.ImagePair(hand.template, hand.reference, hand.grid, None, "files")
    run = peers.register(pair, "simpleitk")
    assert run.param_error is None and run.success is None and math.isfinite(run.final_loss)


def test_results_record_and_verdicts():
    angles = (0.0, 90.0)
    capture = peers.capture_range(angles, 12, ("simpleitk", "single_scale", "predictor_corrector"), n_scales=6)
    assert list(capture) == ["simpleitk", "single_scale", "predictor_corrector", peers.FROM_TRUTH]
    assert [len(v) for v in capture.values()] == [2, 2, 2, 2]
    assert capture[peers.FROM_TRUTH][0].success  # unturned, the objective's minimum is the motion
    pair = il.synthetic_hand_pair(12)
    runs = peers.peer_comparison(pair, ("simpleitk", "single_scale"))
    rec = peers.PeersResults.from_runs(runs, capture, angles, None).to_json()
    assert rec["capture"]["angles"] == [0.0, 90.0]
    assert set(rec["peers"]["simpleitk"]) >= {"final_loss", "param_error", "seconds", "iterations", "success"}
    assert set(rec["capture"]["single_scale"][1]) == {"final_loss", "param_error", "seconds", "iterations", "success"}
    assert "peers_3d" not in rec
    text = peers.capture_verdict(capture, angles)
    assert text["counts"].startswith("Recovered motions: simpleitk ")
    table = peers.capture_table(capture, angles)
    assert table.count("\n") == 3 and ("✓" in table)
    assert ("at every angle" in text["truth"]) == all(r.success for r in capture[peers.FROM_TRUTH])
    rec = peers.PeersResults.from_runs(
        runs, capture, angles, None, capture_images={"mri": {"source": "MRI", "runs": capture}},
        capture_3d={"global": capture["simpleitk"]}, rotations_3d=[(90.0, 0.0), (0.0, 30.0)]).to_json()
    assert rec["capture_images"]["mri"]["source"] == "MRI" and len(rec["capture_images"]["mri"]["simpleitk"]) == 2
    assert rec["capture_3d"]["rotations"] == [[90.0, 0.0], [0.0, 30.0]]


def test_verdict_names_where_each_side_wins():
    def run(ok):
        return peers.PeerRun("x", (0.0,) * 6, 1.0, 0.1 if ok else 9.0, ok, 0.1, 1, "")

    capture = {"simpleitk": [run(True), run(False), run(True)],
               "predictor_corrector": [run(True), run(True), run(False)]}
    v = peers.capture_verdict(capture, (0.0, 10.0, 20.0))
    assert v["better"].endswith("at 20°.") and v["worse"].endswith("at 10°.")
    assert "simpleitk 2 of 3; predictor corrector 2 of 3" in v["counts"]
    # the global driver minimises the mean squares over the overlap: where the SSD's minimum is off, it may recover
    capture = {"global": [run(True), run(True), run(False)],
               peers.FROM_TRUTH: [run(True), run(False), run(True)]}
    v = peers.capture_verdict(capture, (0.0, 10.0, 20.0))
    assert "drifts 9.0–9.0 cells away at 10°" in v["truth"] and "SSD's own minimum is not the motion" in v["truth"]
    assert v["global"] == ("The global driver, on the mean squares over the overlap, recovers 2 of 3; it misses 20°; "
                           "it recovers 10°, where the SSD's minimum is not the motion.")
    capture["global"][2] = run(True)
    assert peers.capture_verdict(capture, (0.0, 10.0, 20.0))["global"] == (
        "The global driver, on the mean squares over the overlap, recovers 3 of 3: every angle, 10° among them, "
        "where the SSD's minimum is not the motion.")
    capture[peers.FROM_TRUTH][1] = run(True)
    assert peers.capture_verdict(capture, (0.0, 10.0, 20.0))["global"].endswith("recovers 3 of 3: every angle.")
    table = peers.runs_table({"a": run(False), "b": run(True)}, 2.0)
    assert "| a | ✗ | ✗ | no |" in table and "| b | 0.5 | 0.10 | yes |" in table


def test_settings_check_everything_first():
    settings = peers.PeersSettings(**GOOD)
    assert settings.shrink_factors == (4, 2, 1) and settings.capture_angles == (0.0, 90.0)
    assert settings.simpleitk == peers.SimpleITKSettings((4, 2, 1), (2.0, 1.0, 0.0), rotation_search_steps=18)
    options = settings.options.kwargs
    assert options["settings"] == settings.simpleitk and options["n_scales"] == 30
    assert set(options) == {"theta_max", "theta_min", "n_scales", "gtol", "gtol_single", "settings"}
    assert settings.options.to_json()["settings"]["smoothing_sigmas"] == [2.0, 1.0, 0.0]
    assert peers.PeersSettings.from_json(settings.to_json()) == settings
    for key, bad, match in (("n_scales", 1, "n_scales"), ("gtol", 0.0, "gtol"),
                            ("sitk_optimizer", "sgd", "sitk_optimizer must be 'regular_step' or 'lbfgsb'"),
                            ("smoothing_sigmas", 3.0, "smoothing_sigmas"), ("capture_m", 4, "capture_m"),
                            ("theta_max", True, "theta_max"), ("gtol_single", float("inf"), "gtol_single"),
                            ("capture_images", "mri", "capture_images"), ("capture_images", ["ct"], "capture_images"),
                            ("rotations_3d", [[90.0]], r"rotations_3d\[0\]"),
                            ("capture_angles", [0.0, True], r"capture_angles\[1\]"),
                            ("shrink_factors", [4, 2.0, 1], r"shrink_factors\[1\]"),
                            ("rotation_search_steps", False, "rotation_search_steps")):
        with pytest.raises(ValueError, match=match):
            peers.PeersSettings(**{**GOOD, key: bad})
