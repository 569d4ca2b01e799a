import numpy as np
import pytest

from seg_perception.encodings import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    ImageFields,
    array_to_fields,
    compressed_to_rgb,
    fill_image,
    image_to_rgb,
    rgb_to_fields,
)


def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
@pytest.mark.parametrize("pad", [0, 3, 16])
def test_colour_round_trip_with_padded_step(encoding, pad):
    rgb = _rgb()
    f = rgb_to_fields(rgb, encoding, pad=pad)
    assert f.step == 7 * (4 if "a" in encoding else 3) + pad
    np.testing.assert_array_equal(image_to_rgb(f), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16", "16UC1"])
@pytest.mark.parametrize("pad", [0, 2])
def test_mono_round_trip(encoding, pad):
    grey = _rgb()[:, :, :1].repeat(3, axis=2)
    f = rgb_to_fields(grey, encoding, pad=pad)
    np.testing.assert_array_equal(image_to_rgb(f), grey)


def test_known_pixel_values_per_encoding():
    # one red pixel, hand-encoded
    assert image_to_rgb(ImageFields(1, 1, "rgb8", 0, 3, bytes([255, 0, 0])))[0, 0].tolist() == [255, 0, 0]
    assert image_to_rgb(ImageFields(1, 1, "bgr8", 0, 3, bytes([0, 0, 255])))[0, 0].tolist() == [255, 0, 0]
    assert image_to_rgb(ImageFields(1, 1, "bgra8", 0, 4, bytes([0, 0, 255, 7])))[0, 0].tolist() == [255, 0, 0]
    # mono16 0x1234: little endian bytes 34 12 -> 0x12; big endian bytes 12 34 -> 0x12
    assert image_to_rgb(ImageFields(1, 1, "mono16", 0, 2, bytes([0x34, 0x12])))[0, 0].tolist() == [0x12] * 3
    assert image_to_rgb(ImageFields(1, 1, "mono16", 1, 2, bytes([0x12, 0x34])))[0, 0].tolist() == [0x12] * 3


class _Msg:
    """The fields of sensor_msgs/Image that fill_image sets (rclpy not needed)."""


@pytest.mark.parametrize(
    "arr, encoding, data",
    [
        (np.array([[1, 2], [3, 4]], np.uint8), "mono8", [1, 2, 3, 4]),
        (np.array([[0x1234, 0x0102]], np.dtype("<u2")), "mono16", [0x34, 0x12, 0x02, 0x01]),
        (np.array([[0x1234, 0x0102]], np.dtype(">u2")), "mono16", [0x34, 0x12, 0x02, 0x01]),  # swapped to little
        (np.array([[1, 2, 3, 4]], np.uint8)[:, ::2], "mono8", [1, 3]),  # not contiguous
        (np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "rgb8", list(range(12))),
    ],
)
def test_fill_image_known_bytes(arr, encoding, data):
    msg = fill_image(_Msg(), arr, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (arr.shape[0], arr.shape[1], encoding, 0)
    assert msg.step * msg.height == len(msg.data) and list(msg.data) == data
    f = array_to_fields(arr, encoding)  # the rclpy-free twin gives the same fields
    assert (f.height, f.width, f.step, list(f.data)) == (msg.height, msg.width, msg.step, data)


def test_last_row_without_padding_is_accepted():
    rgb = _rgb(3, 4)
    f = rgb_to_fields(rgb, "rgb8", pad=5)
    f.data = f.data[:-5]
    np.testing.assert_array_equal(image_to_rgb(f), rgb)


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(encoding="yuv422"), "unsupported encoding"),
        (dict(encoding=""), "unsupported encoding"),
        (dict(height=0), "empty image"),
        (dict(step=5), "step"),
        (dict(data=b"\x00" * 10), "needs"),
        (dict(data=b"\x00" * 500), "more than"),
    ],
)
def test_malformed_frames_raise_with_reason(change, reason):
    f = rgb_to_fields(_rgb(), "rgb8")
    for k, v in change.items():
        setattr(f, k, v)
    with pytest.raises(ImageDecodeError, match=reason):
        image_to_rgb(f)


def test_max_pixels():
    with pytest.raises(ImageDecodeError, match="max_image_pixels"):
        image_to_rgb(rgb_to_fields(_rgb(), "rgb8"), max_pixels=10)


class _C:
    def __init__(self, fmt, data):
        self.format, self.data = fmt, data


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed(ext):
    import cv2

    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 10)
    ok, buf = cv2.imencode(ext, rgb[:, :, ::-1])
    assert ok
    out = compressed_to_rgb(_C("jpeg" if ext == ".jpg" else "png", buf.tobytes()))
    assert out.shape == rgb.shape
    # JPEG is lossy at the colour edge: compare away from it (PNG everywhere, exactly)
    region = np.s_[:, :] if ext == ".png" else np.s_[:, list(range(0, 16)) + list(range(32, 48))]
    assert np.abs(out[region].astype(int) - rgb[region]).max() <= (0 if ext == ".png" else 12)
    with pytest.raises(ImageDecodeError, match="max_image_pixels"):
        compressed_to_rgb(_C("png", buf.tobytes()), max_pixels=100)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        compressed_to_rgb(_C("png", buf.tobytes()[:40]))
    with pytest.raises(ImageDecodeError, match="unsupported compressed format"):
        compressed_to_rgb(_C("tiff", buf.tobytes()))


def test_supported_list_is_complete():
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"):
        assert enc in SUPPORTED_ENCODINGS


# --- decompression bombs on the compressed transport: format from the bytes, size from the header ---------
def _encoded(ext: str, hw=(24, 32)) -> bytes:
    import cv2

    return cv2.imencode(ext, np.full((*hw, 3), 90, np.uint8))[1].tobytes()


def _png_declaring(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR (CRC fixed) declares another size."""
    import zlib

    png = bytearray(_encoded(".png"))
    assert png[12:16] == b"IHDR"
    png[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    return bytes(png)


def _jpeg_with_app_segments(n_segments: int, declare=None) -> bytes:
    """A real JPEG with ``n_segments`` 65 kB APP9 segments before its frame header (SOF), which then lies
    beyond the first 64 KiB; ``declare`` = (width, height) written into the SOF."""
    jpg = bytearray(_encoded(".jpg", (48, 64)))
    app = b"\xff\xe9" + (65533).to_bytes(2, "big") + b"\x00" * 65531
    jpg = jpg[:2] + app * n_segments + jpg[2:]
    if declare is not None:
        sof = next(i for i in range(2, len(jpg) - 9) if jpg[i] == 0xFF and jpg[i + 1] in (0xC0, 0xC2))
        jpg[sof + 5 : sof + 9] = declare[1].to_bytes(2, "big") + declare[0].to_bytes(2, "big")
    return bytes(jpg)


@pytest.mark.parametrize(
    "ext, fmt", [(".webp", "png"), (".tiff", "png"), (".tiff", "rgb8; jpeg compressed bgr8"), (".bmp", "jpeg")]
)
def test_formats_other_than_jpeg_and_png_are_refused_whatever_format_says(ext, fmt):
    data = _encoded(ext)  # a valid image cv2.imdecode would happily decode
    with pytest.raises(ImageDecodeError, match="not JPEG or PNG"):
        compressed_to_rgb(_C(fmt, data), max_pixels=4096 * 4096)


def test_png_declaring_huge_dimensions_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="image 20000x16000 exceeds max_image_pixels"):
        compressed_to_rgb(_C("png", _png_declaring(20000, 16000)), max_pixels=4096 * 4096)


def test_jpeg_with_frame_header_after_64_kib_of_app_segments_is_sized_from_its_header():
    bomb = _jpeg_with_app_segments(2, declare=(20000, 16000))
    assert len(bomb) > 2 * 65536
    with pytest.raises(ImageDecodeError, match="image 20000x16000 exceeds max_image_pixels"):
        compressed_to_rgb(_C("jpeg", bomb), max_pixels=4096 * 4096)
    # the same layout with its honest size decodes
    out = compressed_to_rgb(_C("jpeg", _jpeg_with_app_segments(2)), max_pixels=4096 * 4096)
    assert out.shape == (48, 64, 3)


def test_format_is_taken_from_the_bytes():
    # a PNG announced as jpeg is decoded as the PNG it is (both are accepted formats)
    assert compressed_to_rgb(_C("jpeg", _encoded(".png"))).shape == (24, 32, 3)
    with pytest.raises(ImageDecodeError, match="not JPEG or PNG"):
        compressed_to_rgb(_C("png", b"GIF89a" + b"\x00" * 100))
