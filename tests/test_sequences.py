"""World 4D expression sequences: shapes, neutral anchors, text, lengths and rendering."""

import imageio.v3 as iio
import pytest
import torch

from mien.data.world import SEQUENCE_CLASSES, WorldSequenceDataset, describe, pad_sequences, render_sequence, save_animation
from mien.data.world import geometry as geo
from mien.data.world.sequences import intensity_curve
from mien.errors import ConfigError


def neutral_of(item):
    f = item["factors"]
    coeffs = torch.stack([torch.as_tensor(f[f"shape_{m}"]) for m in geo.SHAPE_MODES])[None].float()
    return geo.neutral_shape(coeffs, f["sex"].reshape(1), f["age"].reshape(1))[0, :68]


def test_sequences_are_absolute_landmarks_anchored_at_the_neutral_face():
    ds = WorldSequenceDataset(40, seed=2)
    assert len(SEQUENCE_CLASSES) >= 10
    for i in range(40):
        item = ds[i]
        seq, f = item["sequence"], item["factors"]
        assert seq.shape == (40, 68, 3)
        anchor = seq[0] if int(f["direction"]) == 0 else seq[-1]
        assert torch.allclose(anchor, neutral_of(item), atol=1e-6)
        apex = seq[-1] if int(f["direction"]) == 0 else seq[0]
        assert (apex - anchor).abs().max() > 0.02
        assert item["text"] == describe(item["label"], int(f["direction"]))


def test_text_descriptions():
    assert describe(SEQUENCE_CLASSES.index("happy"), 0) == "from the neutral face to happy"
    assert describe(SEQUENCE_CLASSES.index("sad"), 1) == "from sad to the neutral face"


def test_intensity_curve_monotone_with_onset_and_peak():
    c = intensity_curve(40, torch.tensor([0, 1]), torch.tensor([0.8, 0.8]), torch.tensor([0.2, 0.2]),
                        torch.tensor([0.5, 0.5]))
    assert (c[0].diff() >= 0).all() and (c[1].diff() <= 0).all()
    assert c[0, 0] == 0 and abs(c[0, -1] - 0.8) < 1e-6 and abs(c[1, 0] - 0.8) < 1e-6 and c[1, -1] == 0
    assert c[0, :8].max() == 0  # nothing moves before the onset (20% of 40 frames)


def test_variable_lengths_and_padding():
    ds = WorldSequenceDataset(30, seed=0, frames=(35, 45))
    lengths = [len(ds[i]["sequence"]) for i in range(30)]
    assert min(lengths) >= 35 and max(lengths) <= 45 and len(set(lengths)) > 3
    batch = pad_sequences([ds[i] for i in range(5)])
    assert batch["sequence"].shape[1] == max(lengths[:5]) and batch["mask"].sum(1).tolist() == lengths[:5]


def test_deterministic_and_identity_pool():
    a, b = WorldSequenceDataset(5, seed=1, n_identities=2), WorldSequenceDataset(5, seed=1, n_identities=2)
    assert torch.equal(a[3]["sequence"], b[3]["sequence"])
    assert {int(a[i]["factors"]["identity"]) for i in range(5)} <= {0, 1}


def test_render_sequence_and_gif(tmp_path):
    item = WorldSequenceDataset(1, seed=0)[0]
    frames = render_sequence(item["sequence"][::8], 48, item["factors"])
    assert frames.shape == (5, 3, 48, 48)
    assert (frames[0] - frames[-1]).abs().max() > 0.1  # the face moves
    save_animation(frames, tmp_path / "a.gif")
    gif = iio.imread(tmp_path / "a.gif")  # Pillow merges identical consecutive frames
    distinct = 1 + int(((frames[1:] - frames[:-1]).abs().amax(dim=(1, 2, 3)) > 0).sum())
    assert gif.shape == (distinct, 48, 48, 3)
    with pytest.raises(ConfigError):
        render_sequence(torch.zeros(4, 10, 3))
    with pytest.raises(ConfigError):
        save_animation(frames, tmp_path / "a.avi")


def test_bad_sequence_options():
    with pytest.raises(ConfigError):
        WorldSequenceDataset(3, frames=(40, 30))
    with pytest.raises(ConfigError):
        WorldSequenceDataset(0)
