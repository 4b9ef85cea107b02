"""DNSMOS with the P.835 model's front run once a clip gives speechmos's scores, window by window.

Clips of three kinds: shorter than a window (tiled by speechmos into several windows, whose
edges fall inside the shared front's output), a little longer than one window (one window),
and long (three windows, no tiling). The reference is speechmos's own `DNSMOS` with the same
onnxruntime threads.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from speechmos.dnsmos import DNSMOS

from workflow_scripts.scoring import dnsmos
from workflow_scripts.scoring.mos import DNSMOSPredictor

SCORE_TOL = 1e-5  # the scores are 1-5; the two computations differ in float32 rounding only


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A voiced, amplitude-modulated tone in noise: a clip the models score off their floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * dnsmos.SAMPLE_RATE)) / dnsmos.SAMPLE_RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * h * np.cumsum(pitch) / dnsmos.SAMPLE_RATE) / h for h in range(1, 8))
    audio = 0.2 * voiced * np.sin(2 * np.pi * 1.3 * t) ** 2 + 0.02 * rng.standard_normal(len(t))
    return np.clip(audio, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def models():
    predictor = DNSMOSPredictor("cpu", threads=1)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    primary = predictor.model.reference.primary_model_path
    p808 = str(primary).replace("sig_bak_ovr.onnx", "model_v8.onnx")
    reference = DNSMOS(primary, p808)
    reference.onnx_sess = onnxruntime.InferenceSession(primary, options)
    reference.p808_onnx_sess = onnxruntime.InferenceSession(p808, options)
    return predictor, reference


@pytest.mark.parametrize(("seconds", "windows"), [(3.3, 4), (9.5, 1), (12.3, 3)])
def test_each_window_scores_as_the_whole_model_scores_it(models, seconds, windows):
    predictor, reference = models
    raw, cut = predictor.model.raw_windows(speech_like(seconds, seed=int(seconds * 10)))
    assert len(cut) == windows and all(len(w) == int(dnsmos.WINDOW_SECONDS * dnsmos.SAMPLE_RATE) for w in cut)
    expected = np.array([reference.onnx_sess.run(None, {"input_1": w[None]})[0][0] for w in cut])
    # without the edge rows recomputed, windows inside a tiled clip differ by about 1e-2
    np.testing.assert_allclose(raw, expected, rtol=0, atol=SCORE_TOL)


def test_the_predictor_gives_speechmos_scores(models):
    predictor, reference = models
    # 4.4 s is tiled to 17.6 s: 8 windows, the 8th one sample short in speechmos's slicing and skipped
    clips = [speech_like(seconds, seed) for seed, seconds in enumerate((2.0, 4.4, 10.2))]
    scores = predictor.predict(clips, progress=False)
    for i, clip in enumerate(clips):
        expected = reference(clip, dnsmos.SAMPLE_RATE, False)
        for column, key in zip(predictor.columns, ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")):
            assert scores[column][i] == pytest.approx(float(expected[key]), abs=SCORE_TOL), (i, column)
        assert 1.0 < scores["dnsmos_ovrl"][i] < 5.0


def test_the_model_halves_are_cut_once_and_read_by_later_processes(tmp_path):
    """The first process cuts the model (importing onnx) and keeps the halves; a later one reads
    them without importing onnx, and scores the same."""
    import json
    import subprocess
    import sys

    script = ("import json, sys, numpy as np\n"
              "from workflow_scripts.scoring.mos import DNSMOSPredictor\n"
              "clip = (0.1 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)\n"
              "scores = DNSMOSPredictor('cpu', threads=1).predict([clip], progress=False)\n"
              "print(json.dumps({'onnx': 'onnx' in sys.modules, 'scores': scores}))\n")
    env = {**__import__("os").environ, dnsmos.CACHE_ENV: str(tmp_path / "cache")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                      text=True).stdout.splitlines()[-1]) for _ in range(2)]
    assert [run["onnx"] for run in runs] == [True, False]
    assert runs[0]["scores"] == runs[1]["scores"]
    # whole files only, nothing left aside
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == ["back.onnx", "front.onnx"]
