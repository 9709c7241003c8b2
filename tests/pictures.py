"""Real pictures for tests: printed words drawn with Pillow, and scikit-image's sample photos."""

import io

from PIL import Image, ImageDraw, ImageFont
from skimage import data


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sign() -> bytes:
    """A shop sign: two lines of printed words."""
    image = Image.new("RGB", (480, 240), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=48)
    draw.text((24, 40), "OPEN 24 HOURS", fill="black", font=font)
    draw.text((24, 140), "Fresh coffee", fill="navy", font=font)
    return png(image)


def astronaut() -> bytes:
    """Eileen Collins' portrait: one smiling face."""
    return png(Image.fromarray(data.astronaut()))
