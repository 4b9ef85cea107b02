"""Reading audio at the edge: broken files are named with what is wrong with them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from workflow_scripts.files.audio import AudioError, read_audio, wav_shortfall


def test_a_truncated_wav_is_named_truncated(tmp_path):
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.sin(np.arange(16000) / 10).astype(np.float32) * 0.5, 16000, subtype="PCM_16")
    assert wav_shortfall(whole) is None and read_audio(whole).size == 16000
    data = whole.read_bytes()
    for kept in (100, len(data) // 2):  # header only, and half of the samples
        cut = tmp_path / f"cut_{kept}.wav"
        cut.write_bytes(data[:kept])
        promised, present = wav_shortfall(cut)
        assert promised == 32000 and present < promised
        with pytest.raises(AudioError, match=rf"{cut}: truncated WAV file: its header promises 32000 bytes"):
            read_audio(cut)


def test_other_formats_and_streamed_wavs_are_not_called_truncated(tmp_path):
    flac = tmp_path / "clip.flac"
    sf.write(flac, np.full(800, 0.1, np.float32), 16000)
    assert wav_shortfall(flac) is None
    streamed = tmp_path / "streamed.wav"
    sf.write(streamed, np.full(800, 0.1, np.float32), 16000, subtype="PCM_16")
    data = bytearray(streamed.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"  # size unknown, as a streaming writer leaves it
    streamed.write_bytes(bytes(data))
    assert wav_shortfall(streamed) is None


def test_submission_audio_is_16_bit_and_clipped_with_a_count_never_wrapped(tmp_path, caplog):
    from workflow_scripts.files.challenge import write_submission_folder

    loud = np.array([0.5, 1.2, -1.5, 0.9999, -1.0], np.float32)
    quiet = np.full(5, 0.25, np.float32)
    with caplog.at_level("WARNING"):
        assert write_submission_folder(tmp_path / "F0", "F0", 2, [quiet, loud]) == 2
    assert sf.info(tmp_path / "F0" / "F0_task2_00.wav").subtype == "PCM_16"
    samples, _ = sf.read(tmp_path / "F0" / "F0_task2_01.wav", dtype="float32")
    assert samples[0] == 0.5 and samples[1] == 32767 / 32768 and samples[2] == -1.0 and samples[4] == -1.0
    assert "1 of 2 files exceeded full scale (peak 1.500): 2 samples clipped" in caplog.text
    assert "F0_task2_01.wav" in caplog.text and "F0_task2_00.wav" not in caplog.text


def test_a_large_dc_offset_is_removed_with_a_warning(tmp_path, caplog):
    from workflow_scripts.files.audio import read_checked

    tone = 0.2 * np.sin(np.arange(16000) / 7.0)
    sf.write(tmp_path / "offset.wav", (tone + 0.5).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "small.wav", (tone + 0.001).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "constant.wav", np.full(16000, 0.5, np.float32), 16000, subtype="FLOAT")
    with caplog.at_level("WARNING"):
        audio = read_checked(tmp_path / "offset.wav", "enrollment clip")
    assert abs(float(np.mean(audio))) < 1e-6 and np.allclose(audio, tone, atol=1e-3)
    assert "offset.wav: the enrollment clip has a DC offset of 0.500 of full scale: removed" in caplog.text
    assert np.mean(read_checked(tmp_path / "small.wav", "noise")) == pytest.approx(0.001, abs=1e-4)  # kept
    with pytest.raises(AudioError, match=r"constant\.wav: noise is silent"):
        read_checked(tmp_path / "constant.wav", "noise")
