"""Builds the wheel: libq8bert from the workspace (../../capi/Cargo.toml) with cargo, through
setuptools-rust, shipped inside the package as q8bert/_libq8bert*.so and loaded with ctypes.

The build needs the repository checkout (the crate lives two directories up), so build wheels
from it: `pip install ./bindings/python`, `pip wheel ./bindings/python`. An sdist is not
supported.

It also compiles q8bert/_calls.c, the C hot path of the text calls, against CPython's stable ABI
for 3.11+ (the wheel is then tagged cp311-abi3-<platform>: one wheel for every CPython >= 3.11).
That extension is optional: on an older Python or without a C compiler or Python headers the
build goes on without it, the package calls the library through ctypes only, and the wheel is
py3-none-<platform> (the library itself does not link libpython). `auditwheel repair` makes either
manylinux.
"""
import re
import sys
from pathlib import Path

from setuptools import Extension, setup
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


STABLE_ABI = sys.version_info >= (3, 11)  # _calls.c uses PyObject_GetBuffer, stable since 3.11


class q8bert_wheel(bdist_wheel):
    """cp311-abi3 when _calls was built, else py3-none: the library does not link libpython."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        build_ext = self.get_finalized_command("build_ext")
        built = any(Path(f).is_file() and "_calls" in Path(f).name for f in build_ext.get_outputs())
        return ("cp311", "abi3", plat) if built and STABLE_ABI else ("py3", "none", plat)


setup(
    version=m.group(1),
    rust_extensions=[RustExtension(
        "q8bert._libq8bert",
        path=str(here.parent.parent / "capi" / "Cargo.toml"),
        # setuptools-rust runs `cargo rustc --lib --crate-type cdylib` on the C library's package:
        # only the C library, not the trainer, examples or benches.
        binding=Binding.NoBinding,
        # The workspace's release profile keeps line tables (debug = 1) for profiling; the
        # wheel's copy drops them (`strip -S`): 6.7 MB -> 1.0 MB.
        strip=Strip.Debug,
    )],
    ext_modules=[Extension(
        "q8bert._calls",
        ["q8bert/_calls.c"],
        include_dirs=[str(here.parent.parent / "include")],  # q8bert.h: the signature it calls
        py_limited_api=True,
        optional=True,
    )] if STABLE_ABI else [],
    cmdclass={"bdist_wheel": q8bert_wheel},
)
