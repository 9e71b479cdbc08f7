#!/usr/bin/env python3
"""Tests of convert_official.py. Run: python3 tools/test_convert_official.py

The conversion logic is tested on plain dicts of numpy arrays (needs numpy); writing needs
safetensors; the end-to-end test (an official-style .pth.tar built from the golden weights in
tests/golden, with DataParallel's 'module.' prefix) needs torch. Tests whose Python packages are
missing skip; the golden weights are part of the repository, and their absence is a failure.
"""

import os
import pickle
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_official  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None
try:
    import torch
except ImportError:
    torch = None
try:
    import safetensors.numpy as st_numpy
except ImportError:
    st_numpy = None

REPOSITORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GOLDEN = os.path.join(REPOSITORY, "tests", "golden", "resnet20_1w1a", "weights.safetensors")


class Fixtures(unittest.TestCase):
    def test_golden_weights_are_in_the_repository(self):
        self.assertTrue(os.path.isfile(GOLDEN), f"{GOLDEN} is missing (tests/golden/README.md)")


@unittest.skipIf(np is None, "numpy is not installed")
class ConvertLogic(unittest.TestCase):
    def official_like(self):
        return {
            "epoch": 12,
            "model": "resnet20_1w1a",
            "best_prec1": 55.5,
            "state_dict": {
                "module.conv1.weight": np.ones((16, 3, 3, 3), dtype=np.float64),
                "module.bn1.num_batches_tracked": np.array(7, dtype=np.int32),
                "module.layer1.0.conv1.R1": np.eye(12, dtype=np.float32),
            },
            "parameters": ["not", "kept"],
        }

    def test_prefix_dtypes_and_metadata(self):
        tensors, meta = convert_official.convert(self.official_like(), dataset="cifar10")
        self.assertEqual(
            sorted(tensors), ["bn1.num_batches_tracked", "conv1.weight", "layer1.0.conv1.R1"]
        )
        self.assertEqual(tensors["conv1.weight"].dtype, np.float32)
        self.assertEqual(tensors["bn1.num_batches_tracked"].dtype, np.int64)
        self.assertEqual(tensors["bn1.num_batches_tracked"].shape, ())
        self.assertEqual(
            meta,
            {
                "format": "rbnn-checkpoint",
                "format_version": "1",
                "model": "resnet20_1w1a",
                "dataset": "cifar10",
                "official_epoch": "12",
                "official_best_top1": "55.5",
            },
        )

    def test_pickled_plain_dict_round_trip(self):
        # The logic does not care how the dict was stored: a pickle stands in for torch.save.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ckpt.pkl")
            with open(path, "wb") as f:
                pickle.dump(self.official_like(), f)
            with open(path, "rb") as f:
                tensors, _ = convert_official.convert(pickle.load(f))
        self.assertIn("conv1.weight", tensors)

    def test_bare_state_dict_and_errors(self):
        tensors, meta = convert_official.convert(
            {"linear.bias": np.zeros(10, dtype=np.float32)}, model="resnet18_1w1a"
        )
        self.assertEqual(list(tensors), ["linear.bias"])
        self.assertEqual(meta["model"], "resnet18_1w1a")
        with self.assertRaisesRegex(ValueError, "--model"):
            convert_official.convert({"linear.bias": np.zeros(10)})
        with self.assertRaisesRegex(ValueError, "twice"):
            convert_official.convert(
                {"state_dict": {"module.a": np.zeros(1), "a": np.zeros(1)}}, model="m"
            )
        with self.assertRaisesRegex(ValueError, "no 'state_dict'"):
            convert_official.convert({"epoch": 3, "model": "m"})
        with self.assertRaisesRegex(ValueError, "dtype"):
            convert_official.convert({"state_dict": {"s": np.array(["x"])}}, model="m")

    def imagenet_like(self, model="resnet18_1w1a"):
        f = np.float32
        return {
            "epoch": 150,
            "model": model,
            "best_prec1": 59.9,
            "state_dict": {
                "module.conv1.weight": np.zeros((64, 3, 7, 7), dtype=f),
                "module.layer2.0.downsample.0.weight": np.zeros((128, 64, 1, 1), dtype=f),
                "module.fc.weight": np.zeros((1000, 512), dtype=f),
                "module.bn3.weight": np.ones(1000, dtype=f),
            },
        }

    def test_official_imagenet_names_become_rbnns(self):
        for official, ours in [
            ("resnet18_1w1a", "resnet18_1w1a_imagenet"),
            ("resnet34_1w1a", "resnet34_1w1a_imagenet"),
        ]:
            tensors, meta = convert_official.convert(self.imagenet_like(official))
            self.assertEqual(meta["model"], ours)
            self.assertEqual(meta["dataset"], "imagenet")
            # The tensor names stay the official ones.
            self.assertIn("layer2.0.downsample.0.weight", tensors)
            self.assertIn("bn3.weight", tensors)
        # rbnn's own name is accepted as well; an explicit dataset is kept.
        _, meta = convert_official.convert(
            self.imagenet_like(), model="resnet34_1w1a_imagenet", dataset="imagenet:193"
        )
        self.assertEqual((meta["model"], meta["dataset"]), ("resnet34_1w1a_imagenet", "imagenet:193"))
        # The CIFAR resnet18_1w1a keeps its name; mismatches are errors naming both sides.
        _, meta = convert_official.convert(
            {"linear.bias": np.zeros(10, dtype=np.float32)}, model="resnet18_1w1a"
        )
        self.assertEqual(meta["model"], "resnet18_1w1a")
        with self.assertRaisesRegex(ValueError, "ImageNet ResNet's.*resnet20_1w1a"):
            convert_official.convert(self.imagenet_like("resnet20_1w1a"))
        with self.assertRaisesRegex(ValueError, "no 7x7 conv1"):
            convert_official.convert(self.official_like(), model="resnet18_1w1a_imagenet")

    @unittest.skipIf(st_numpy is None, "safetensors is not installed")
    def test_save_writes_safetensors(self):
        tensors, meta = convert_official.convert(self.official_like())
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.safetensors")
            convert_official.save(tensors, meta, out)
            self.assertEqual(os.listdir(d), ["out.safetensors"])
            back = st_numpy.load_file(out)
        self.assertEqual(back["bn1.num_batches_tracked"].dtype, np.int64)
        np.testing.assert_array_equal(back["layer1.0.conv1.R1"], np.eye(12))


@unittest.skipIf(torch is None or st_numpy is None, "torch or safetensors is not installed")
class EndToEnd(unittest.TestCase):
    def test_official_dataparallel_checkpoint(self):
        from safetensors import safe_open
        from safetensors.torch import load_file

        golden = load_file(GOLDEN)
        state = {"module." + k: v for k, v in golden.items()}
        checkpoint = {
            "epoch": 400,
            "model": "resnet20_1w1a",
            "state_dict": state,
            "best_prec1": 86.5,
            "parameters": [torch.nn.Parameter(v.clone()) for v in golden.values()
                           if v.is_floating_point()],
        }
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "model_best.pth.tar")
            out = os.path.join(d, "converted.safetensors")
            torch.save(checkpoint, src)
            convert_official.main([src, out, "--dataset", "cifar10"])
            back = load_file(out)
            with safe_open(out, "np") as f:
                meta = f.metadata()
        self.assertEqual(sorted(back), sorted(golden))
        for name, value in golden.items():
            self.assertEqual(back[name].dtype, value.dtype, name)
            self.assertTrue(torch.equal(back[name], value), name)
        self.assertEqual(back["bn1.num_batches_tracked"].dtype, torch.int64)
        self.assertEqual(meta["model"], "resnet20_1w1a")
        self.assertEqual(meta["format"], "rbnn-checkpoint")
        self.assertEqual(meta["official_epoch"], "400")


if __name__ == "__main__":
    unittest.main(verbosity=2)
