"""Probe: what reading the EXIF orientation tag adds to decoding an image (imageio.open_image
checks it for every image it opens, so training's one-off decode and every predict pay it).

    python benchmarks/probes/exif_check_cost_probe.py FOLDER [--files 5000] [--rounds 3]

FOLDER holds images in class folders (CIFAR-10's training JPEGs, say). Times, alternated over
--rounds rounds, the full decode (`image_to_array`, the check included) against the check alone
on an already-loaded image (`getexif().get(orientation)`, what the decoder does when there is no
turn), and prints the check's share of the decode. Best round of each.
"""

import argparse
import glob
import time

from PIL import ExifTags, Image

from squeezenet.deploy.bench import cpu_line
from squeezenet.imageio import image_to_array


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    files = sorted(glob.glob(f"{a.folder}/*/*"))[: a.files]

    def loaded():  # freshly opened images: Pillow caches a parsed EXIF block on the image
        out = []
        for p in files:
            with Image.open(p) as im:
                im.load()
                out.append(im)
        return out

    def decode(_):
        for p in files:
            image_to_array(p, 3, None)

    def check(images):
        for im in images:
            im.getexif().get(ExifTags.Base.Orientation, 1)

    best = {"decode": float("inf"), "check": float("inf")}
    for _ in range(a.rounds):
        for name, fn in (("decode", decode), ("check", check)):
            images = loaded() if name == "check" else None
            t = time.perf_counter()
            fn(images)
            best[name] = min(best[name], time.perf_counter() - t)
    print(cpu_line())
    for name, s in best.items():
        print(f"{name}: {len(files)} files, best {s:.3f} s, {1e6 * s / len(files):.1f} us/file")
    print(f"the check's share of a decode: {100 * best['check'] / best['decode']:.1f}%")


if __name__ == "__main__":
    main()
