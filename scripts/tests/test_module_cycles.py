#!/usr/bin/env python3
"""Tests of scripts/module-cycles.py on small crates made to hold (or not)
a ring: one hidden behind re-exports from lib.rs, one behind a `use` group
with a rename and a mod.rs re-export, and one with none."""
import importlib.util
import os
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "module_cycles", os.path.join(HERE, "..", "module-cycles.py")
)
module_cycles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module_cycles)


def rings(name):
    return module_cycles.check(os.path.join(HERE, "module_cycles", name, "src"))


class ModuleCycles(unittest.TestCase):
    def test_a_ring_through_names_reexported_from_lib_is_found(self):
        self.assertEqual(rings("ring_via_reexport"), [["backend", "config"]])

    def test_a_ring_through_a_renamed_group_and_a_mod_reexport_is_found(self):
        self.assertEqual(rings("ring_via_group"), [["selection", "settings"]])

    def test_one_way_imports_comments_and_test_modules_are_no_ring(self):
        self.assertEqual(rings("no_ring"), [])

    def test_the_command_fails_on_a_ring_and_passes_without(self):
        ring = os.path.join(HERE, "module_cycles", "ring_via_reexport", "src")
        none = os.path.join(HERE, "module_cycles", "no_ring", "src")
        self.assertEqual(module_cycles.main([none]), 0)
        self.assertEqual(module_cycles.main([ring]), 1)


if __name__ == "__main__":
    unittest.main()
