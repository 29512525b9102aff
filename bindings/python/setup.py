"""Builds the wheel: libq8bert from the workspace (../../Cargo.toml) with cargo, through
setuptools-rust, shipped inside the package as q8bert/_libq8bert*.so and loaded with ctypes.

The build needs the repository checkout (the crate lives two directories up), so build wheels
from it: `pip install ./bindings/python`, `pip wheel ./bindings/python`. An sdist is not
supported. The library does not link libpython, so the wheel is tagged py3-none-<platform>:
one wheel serves every CPython 3 on that platform (`auditwheel repair` makes it manylinux).
"""
import re
from pathlib import Path

from setuptools import setup
from setuptools_rust import Binding, RustExtension, Strip

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

here = Path(__file__).resolve().parent
cargo_toml = here.parent.parent / "Cargo.toml"
if not cargo_toml.is_file():
    raise SystemExit(f"q8bert: {cargo_toml} not found; build the wheel from a q8bert checkout "
                     "(pip install ./bindings/python), not from an sdist")
m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo_toml.read_text(), re.M | re.S)
if not m:
    raise SystemExit(f"q8bert: no [package] version in {cargo_toml}")


class py3_wheel(bdist_wheel):
    """The bundled library is plain C ABI (no libpython): any CPython 3, this platform."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    version=m.group(1),
    rust_extensions=[RustExtension(
        "q8bert._libq8bert",
        path=str(cargo_toml),
        # setuptools-rust runs `cargo rustc --lib --crate-type cdylib` on the q8bert package:
        # only the C library, not the trainer, examples or benches.
        binding=Binding.NoBinding,
        # The workspace's release profile keeps line tables (debug = 1) for profiling; the
        # wheel's copy drops them (`strip -S`): 6.7 MB -> 1.0 MB.
        strip=Strip.Debug,
    )],
    cmdclass={"bdist_wheel": py3_wheel},
)
