//! The Snitch cores of a PMCA as kernel cost models.
//!
//! The cores are NOT simulated instruction by instruction. Each kernel
//! (element-wise add, format conversion, softmax, norms, activations) costs
//! `launch + ceil(elements * fpu_ops_per_element / (cores * lanes * utilisation)) + barrier`
//! cycles of the PMCA clock, where `lanes` is the FP16 SIMD width of one
//! core's FPU and `utilisation` is the fraction of FPU issue slots that SSR
//! streams and FREP loops keep busy (> 90 % on dense kernels, Schuiki et al.
//! 2021). The per-element operation counts are this model's assumptions and
//! live in the architecture file.

use crate::units::Cycles;
use serde::{Deserialize, Serialize};

/// The element-wise kernels the cores run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kernel {
    /// `a + b` (residuals, partial-sum accumulation, the AIMC + LoRA add).
    Add,
    /// ADC codes to FP16 with the per-column affine scale.
    Convert,
    /// FP16 to the tile's input format with per-token abs-max scaling.
    Quantise,
    Softmax,
    LayerNorm,
    RmsNorm,
    /// MobileBERT's NoNorm: an element-wise scale and shift.
    NoNorm,
    Gelu,
    Relu,
    /// SiLU(gate) * up: two inputs, one output per element.
    Swiglu,
}

/// FPU operations per element for each kernel (see the module header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelOps {
    pub add: u32,
    pub convert: u32,
    pub quantise: u32,
    pub softmax: u32,
    pub layer_norm: u32,
    pub rms_norm: u32,
    pub no_norm: u32,
    pub gelu: u32,
    pub relu: u32,
    pub swiglu: u32,
}

impl Default for KernelOps {
    fn default() -> Self {
        // Assumed instruction counts per element on a Snitch FPU: an add is one
        // FADD; conversion an FCVT plus an FMA with the column scale; softmax a
        // max pass, an exp (polynomial, ~8 FMAs), a sum and a multiply by the
        // reciprocal; LayerNorm mean, variance, normalise and affine (~5);
        // GELU by its tanh approximation (~10); SwiGLU a sigmoid (~9) and two
        // multiplies.
        KernelOps {
            add: 1,
            convert: 2,
            quantise: 3,
            softmax: 11,
            layer_norm: 5,
            rms_norm: 4,
            no_norm: 1,
            gelu: 10,
            relu: 1,
            swiglu: 11,
        }
    }
}

impl KernelOps {
    pub fn of(&self, k: Kernel) -> u32 {
        match k {
            Kernel::Add => self.add,
            Kernel::Convert => self.convert,
            Kernel::Quantise => self.quantise,
            Kernel::Softmax => self.softmax,
            Kernel::LayerNorm => self.layer_norm,
            Kernel::RmsNorm => self.rms_norm,
            Kernel::NoNorm => self.no_norm,
            Kernel::Gelu => self.gelu,
            Kernel::Relu => self.relu,
            Kernel::Swiglu => self.swiglu,
        }
    }
}

/// Parameters of the Snitch cluster's cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnitchParams {
    /// Cores that compute (the study's cluster has 8).
    pub compute_cores: u32,
    /// Cores that only drive the DMA engine (1).
    pub dma_cores: u32,
    /// FPU data width in bits: 32 gives 2 FP16 lanes per core (the study's
    /// RV32IMAF cores); 64 gives 4 (snitch_cluster's default).
    pub fpu_width_bits: u32,
    /// Percentage of FPU issue slots kept busy by SSR + FREP on streaming
    /// kernels (> 90 % reported).
    pub fpu_utilisation_percent: u32,
    /// Cycles to start a kernel on the cores: wake-up, SSR configuration,
    /// loop setup (assumption).
    pub kernel_launch_cycles: u64,
    /// Cycles of the hardware barrier that ends a parallel kernel (assumption).
    pub barrier_cycles: u64,
    /// Cycles a core spends programming one RedMule job (about 8
    /// memory-mapped register writes plus the trigger, REFERENCE.md §4).
    pub redmule_program_cycles: u64,
    pub ops: KernelOps,
}

impl Default for SnitchParams {
    fn default() -> Self {
        SnitchParams {
            compute_cores: 8,
            dma_cores: 1,
            fpu_width_bits: 32,
            fpu_utilisation_percent: 90,
            kernel_launch_cycles: 20,
            barrier_cycles: 10,
            redmule_program_cycles: 20,
            ops: KernelOps::default(),
        }
    }
}

impl SnitchParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.compute_cores == 0 {
            return Err("compute_cores: must be at least 1".into());
        }
        if self.dma_cores == 0 {
            return Err("dma_cores: at least one core must drive the DMA".into());
        }
        if self.fpu_width_bits < 16 || self.fpu_width_bits % 16 != 0 {
            return Err(format!(
                "fpu_width_bits: {} is not a multiple of 16 (FP16 lanes)",
                self.fpu_width_bits
            ));
        }
        if !(1..=100).contains(&self.fpu_utilisation_percent) {
            return Err(format!(
                "fpu_utilisation_percent: {} is outside 1..=100",
                self.fpu_utilisation_percent
            ));
        }
        Ok(())
    }

    /// FP16 lanes of one core's FPU.
    pub fn fp16_lanes(&self) -> u32 {
        self.fpu_width_bits / 16
    }

    /// Cycles of a kernel over `elements` elements, spread over all compute
    /// cores (see the module header).
    pub fn kernel_cycles(&self, kernel: Kernel, elements: u64) -> Cycles {
        if elements == 0 {
            return Cycles(0);
        }
        let ops = elements * self.ops.of(kernel) as u64;
        // ops per cycle = cores * lanes * util/100, kept in integers.
        let per_cycle_x100 = self.compute_cores as u64
            * self.fp16_lanes() as u64
            * self.fpu_utilisation_percent as u64;
        let body = (ops * 100).div_ceil(per_cycle_x100);
        Cycles(self.kernel_launch_cycles + body + self.barrier_cycles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_kernel_cycles_by_hand() {
        let p = SnitchParams::default();
        // 1024 adds on 8 cores x 2 lanes at 90 %: 1024 / 14.4 = 71.1 -> 72,
        // plus launch 20 and barrier 10 = 102.
        assert_eq!(p.kernel_cycles(Kernel::Add, 1024), Cycles(102));
        // Softmax, 11 ops: 11264 / 14.4 = 782.2 -> 783, + 30 = 813.
        assert_eq!(p.kernel_cycles(Kernel::Softmax, 1024), Cycles(813));
        assert_eq!(p.kernel_cycles(Kernel::Add, 0), Cycles(0));
    }

    #[test]
    fn a_wider_fpu_halves_the_body() {
        let p = SnitchParams {
            fpu_width_bits: 64,
            fpu_utilisation_percent: 100,
            kernel_launch_cycles: 0,
            barrier_cycles: 0,
            ..SnitchParams::default()
        };
        // 8 cores x 4 lanes = 32 adds per cycle.
        assert_eq!(p.kernel_cycles(Kernel::Add, 3200), Cycles(100));
    }

    #[test]
    fn validation_names_the_field() {
        let p = SnitchParams {
            fpu_width_bits: 24,
            ..SnitchParams::default()
        };
        assert!(p.validate().unwrap_err().starts_with("fpu_width_bits"));
    }
}
