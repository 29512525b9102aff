//! 32-bit Arm M-profile kernels (Cortex-M), chosen at compile time from the target's features:
//! `dsp` (the DSP extension's `SXTB16` + `SMLAD`: Cortex-M4/M7/M33/M35P/M55/M85 where the
//! extension is present), and `helium` (MVE `VMLADAVA.S8`, Cortex-M55/M85), built with
//! `--cfg q8bert_helium` as Rust has no `mve` target feature yet. The weights are read in the file's P16K4 layout, in place (firmware
//! keeps models in flash).

pub(crate) mod dsp;
#[cfg(q8bert_helium)]
pub(crate) mod helium;
