"""Digits, photos and text: offline loading, fixed disjoint splits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from showo.embedded import digits, photos, text
from showo.errors import ShowoError


def test_digit_splits_partition_the_real_digits():
    train, heldout = digits.split_indices("train"), digits.split_indices("heldout")
    assert not set(train) & set(heldout)
    assert len(train) + len(heldout) == 1797
    assert 300 < len(heldout) < 400
    reference = load_digits()
    images, labels = digits.arrays("heldout")
    np.testing.assert_array_equal(images, reference.images[heldout])
    np.testing.assert_array_equal(labels, reference.target[heldout])
    assert set(labels) == set(range(10))


def test_digit_images_round_trip_to_the_stored_intensities():
    items = list(digits.digits("heldout", size=64))
    assert [d.class_name for d in items[:3]] == [digits.CLASS_NAMES[d.label] for d in items[:3]]
    images, _ = digits.arrays("heldout")
    for item, raw in zip(items[:50], images[:50]):
        assert item.image.size == (64, 64) and item.image.mode == "RGB"
        back = digits.downscale(item.image)
        assert back.shape == (8, 8) and back.min() >= 0 and back.max() <= 16
        assert np.abs(back - raw).mean() < 1.5
    assert items[0].image.tobytes() == next(digits.digits("heldout")).image.tobytes()
    with pytest.raises(ShowoError):
        digits.upscale(np.zeros((4, 4)))


def test_photos_load_offline_with_fixed_disjoint_splits():
    train, heldout = photos.names("train"), photos.names("heldout")
    assert set(heldout) == set(photos.HELDOUT)
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) == set(photos.names())
    assert len(train) >= 12
    for name in photos.names():
        image = photos.load(name)
        assert image.mode == "RGB" and min(image.size) >= 150, name
    assert photos.load("china").tobytes() == photos.load("china").tobytes()
    with pytest.raises(ShowoError):
        photos.load("no_such_photo")


def test_text_documents_are_pydoc_topics():
    train, heldout = text.documents("train"), text.documents("heldout")
    assert len(train) > 50 and len(heldout) > 3
    assert not set(train) & set(heldout)
    assert all(doc and doc == doc.strip() for doc in train)
    assert any("assert" in doc for doc in train + heldout)
    assert train == text.documents("train")
    with pytest.raises(ShowoError):
        text.documents("dev")
