"""CelebA (Liu et al. 2015): 202,599 aligned face photos, in the official folder layout:
img_align_celeba/*.jpg and list_eval_partition.txt (one line per image: file name, then 0 for
train, 1 for val, 2 for test).

The JPEGs are decoded once, centre-cropped to 148x148 and resized to 64x64 as is usual in the VAE
literature, into a cached uint8 array beside them; later runs and epochs read only that file.
"""

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vaelab.data.in_memory import Arrays, InMemoryDataModule
from vaelab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGES, PARTITION = "img_align_celeba", "list_eval_partition.txt"
SPLITS = ("train", "val", "test")  # the partition file's 0, 1, 2


def read_partition(path: Path) -> tuple[list[str], np.ndarray]:
    """(file names, split codes 0/1/2) from list_eval_partition.txt."""
    names, codes = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {number}: expected '<file>.jpg 0|1|2', got {line!r}")
        names.append(fields[0])
        codes.append(int(fields[1]))
    if not names:
        raise DataError(f"{path} lists no images")
    return names, np.asarray(codes, np.int64)


def decode(path: Path, crop: int, size: int) -> np.ndarray:
    """One JPEG -> (3, size, size) uint8: centre crop, then an antialiased resize."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as F

    try:
        image = decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as error:
        raise DataError(f"cannot decode {path}: {error}") from None
    image = F.resize(F.center_crop(image, [crop, crop]), [size, size], antialias=True)
    return image.numpy()


class CelebADataModule(InMemoryDataModule):
    """x: (3, image_size, image_size) uint8 in memory, float32 in [0, 1] per batch; y: -1 (the
    attributes are not read). The official train/val/test partition is kept."""

    def __init__(
        self,
        *args,
        crop: int = 148,
        image_size: int = 64,
        likelihood: str = "gaussian",
        **kwargs,
    ):
        super().__init__(*args, likelihood=likelihood, **kwargs)
        if crop < 1 or image_size < 1:
            raise ConfigError(f"data.crop={crop}, data.image_size={image_size}: must be >= 1")
        self.crop, self.image_size = crop, image_size
        self._cache: Path | None = None  # the decoded images, once checked in this process

    def _folders(self) -> list[Path]:
        root = Path(self.data_dir).expanduser()
        return [root / "celeba", root]  # torchvision's layout first

    def _folder(self) -> Path | None:
        for folder in self._folders():
            if (folder / IMAGES).is_dir() and (folder / PARTITION).is_file():
                return folder
        return None

    def prepare_data(self) -> None:
        # Called by train, by Lightning's fit and by read(): the partition is checked once.
        if self._cache is not None:
            return
        if self._folder() is None and self.download:
            import torchvision.datasets

            try:
                torchvision.datasets.CelebA(self.data_dir, split="all", download=True)
            except Exception as error:  # gdown and Google Drive fail in many ways
                log.warning(f"CelebA download failed: {error}")
        if self._folder() is None:
            raise DataError(
                f"CelebA not found: looked in {' and '.join(map(str, self._folders()))} for "
                f"{IMAGES}/ (the aligned JPEGs) and {PARTITION}; download both from "
                f"https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (torchvision's Google Drive "
                f"download often fails), put them in {self._folders()[0]}, and set data.data_dir"
            )
        self._cache = self._write_cache()

    def _cache_path(self, folder: Path) -> Path:
        return folder / f"vaelab_cache_crop{self.crop}_{self.image_size}px.npz"

    def _write_cache(self) -> Path:
        """The decoded images' file; decoded and written unless it is there for these images,
        atomically, so an interrupted decode leaves no half-written cache behind."""
        folder = self._folder()
        names, codes = read_partition(folder / PARTITION)
        path = self._cache_path(folder)
        if path.is_file():
            with np.load(path) as cache:  # reads only the member asked for
                if cache["names"].tolist() == names:
                    return path
            log.info(f"{PARTITION} changed since {path} was written: decoding again")
        missing = [name for name in names if not (folder / IMAGES / name).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} images listed in {folder / PARTITION} are missing from "
                f"{folder / IMAGES}, e.g. {missing[0]}"
            )
        log.info(f"Decoding {len(names)} CelebA images into {path} (once)")
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            images = list(
                pool.map(lambda n: decode(folder / IMAGES / n, self.crop, self.image_size), names)
            )
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as file:
            np.savez(file, images=np.stack(images), codes=codes, names=np.asarray(names))
        os.replace(file.name, path)
        return path

    def read(self) -> dict[str, Arrays]:
        self.prepare_data()  # without a Trainer nobody else calls it
        cache = dict(np.load(self._cache))
        images = torch.from_numpy(cache["images"])
        arrays = {}
        for code, split in enumerate(SPLITS):
            where = np.flatnonzero(cache["codes"] == code)
            if len(where) == 0:
                raise DataError(f"{self._folder() / PARTITION} puts no image in the {split} split")
            arrays[split] = (images[where], torch.full((len(where),), -1, dtype=torch.int64))
            self.ids[split] = cache["names"][where]
        return arrays
