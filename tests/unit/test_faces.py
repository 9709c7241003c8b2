"""Face detection and expression on real photos from scikit-image's sample data.

The astronaut portrait (Eileen Collins, smiling) is read as happy with p > 0.99 whatever the
crop margin, so that is asserted; the coffee cup has no face.
"""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from skimage import data

from deployments.vision.faces import EXPRESSIONS, FaceExpressionClassifier

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def classifier():
    return FaceExpressionClassifier()


def jpeg(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes() if exif else b"")
    return buffer.getvalue()


def assert_astronaut_face(faces):
    assert len(faces) == 1
    x, y, w, h = faces[0]["box"]
    assert 150 < x < 210 and 40 < y < 100 and 70 < w < 130 and w == h, "the face, upper middle of the photo"
    assert set(faces[0]["scores"]) == set(EXPRESSIONS)
    assert sum(faces[0]["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert faces[0]["label"] == max(faces[0]["scores"], key=faces[0]["scores"].get) == "happy"


def test_the_astronaut_has_one_happy_face(classifier):
    assert_astronaut_face(classifier.detect(data.astronaut()))


def test_encoded_grey_and_rgba_images_give_the_same_face(classifier):
    photo = Image.fromarray(data.astronaut())
    assert_astronaut_face(classifier.detect(jpeg(photo)))
    assert_astronaut_face(classifier.detect(np.asarray(photo.convert("L"))))
    assert_astronaut_face(classifier.detect(np.asarray(photo.convert("RGBA"))))


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(classifier):
    sideways = Image.fromarray(data.astronaut()).transpose(Image.Transpose.ROTATE_90)
    assert classifier.detect(jpeg(sideways)) == [], "the frontal-face cascade does not find a sideways face"
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    assert_astronaut_face(classifier.detect(jpeg(sideways, exif)))


def test_no_face_in_a_coffee_cup(classifier):
    assert classifier.detect(data.coffee()) == []


def test_threads_can_share_one_classifier(classifier):
    photos = [data.astronaut(), data.coffee()] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(classifier.detect, photos))
    assert results == [classifier.detect(data.astronaut()), []] * 4


def test_arrays_must_be_8_bit_images(classifier):
    with pytest.raises(ValueError, match="uint8"):
        classifier.detect(data.astronaut().astype(np.float32))
