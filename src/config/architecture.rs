//! The hardware description: AIMC tiles, the PMCA beside each tile, the link
//! between them, the shared L2 and the pipeline schedule. Every field names
//! its unit; defaults are the reference study's system (REFERENCE.md §1,
//! §3-§6) and assumptions are marked as such.

use crate::functional::AnalogParams;
use crate::hw::aimc::AimcParams;
use crate::hw::dma::DmaParams;
use crate::hw::redmule::RedMuleParams;
use crate::hw::snitch::SnitchParams;
use crate::hw::tcdm::TcdmParams;
use crate::units::{Bytes, Hz, Ps};
use serde::{Deserialize, Serialize};

/// The whole system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Architecture {
    /// A name for reports.
    pub name: String,
    /// Tile + PMCA pairs on the chip. `None`: as many as the mapping needs.
    pub pairs: Option<u32>,
    pub aimc: AimcParams,
    pub pmca: PmcaParams,
    pub link: LinkParams,
    pub l2: L2Params,
    pub schedule: Schedule,
    /// The numerical model of the AIMC tiles for the functional mode: PCM
    /// device noise and drift, DAC/ADC periphery, drift compensation.
    pub analog: AnalogParams,
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture {
            name: "paper".into(),
            pairs: None,
            aimc: AimcParams::default(),
            pmca: PmcaParams::default(),
            link: LinkParams::default(),
            l2: L2Params::default(),
            schedule: Schedule::Study,
            analog: AnalogParams::default(),
        }
    }
}

/// The programmable multi-core accelerator beside each tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PmcaParams {
    /// Clock of the whole cluster (cores, RedMule, TCDM, DMA).
    pub clock: Hz,
    pub cores: SnitchParams,
    pub redmule: RedMuleParams,
    pub tcdm: TcdmParams,
    pub dma: DmaParams,
    /// Cycles of the per-group handshake between the DMA core and the
    /// compute cores (a barrier plus a flag in the TCDM) before a group's
    /// PMCA work may start (assumption).
    pub group_sync_cycles: u64,
    /// TCDM budget for one chunk of attention: the keys and values of the
    /// chunk and the group's scores against them. Attention streams K and V
    /// from the L2 through the TCDM in chunks of this size (online softmax);
    /// assumption: a quarter of the TCDM, leaving room for the pipeline's
    /// other buffers.
    pub attention_chunk_bytes: Bytes,
}

impl Default for PmcaParams {
    fn default() -> Self {
        PmcaParams {
            clock: Hz(1_000_000_000),
            cores: SnitchParams::default(),
            redmule: RedMuleParams::default(),
            tcdm: TcdmParams::default(),
            dma: DmaParams::default(),
            group_sync_cycles: 30,
            attention_chunk_bytes: Bytes(32 << 10),
        }
    }
}

/// Number format of values crossing the tile <-> PMCA link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkFormat {
    /// Raw DAC/ADC codes, one byte each: the PMCA's cores convert ADC codes
    /// to FP16 and apply the affine scale, and quantise inputs.
    Int8,
    /// FP16: the tile's digital periphery applies the affine scale (and
    /// quantises inputs), two bytes per value cross the link.
    Fp16,
}

impl LinkFormat {
    pub fn bytes(self) -> u64 {
        match self {
            LinkFormat::Int8 => 1,
            LinkFormat::Fp16 => 2,
        }
    }
}

/// The point-to-point link between a tile and its PMCA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkParams {
    /// Data width per direction in bits, one transfer per PMCA clock cycle.
    /// Inputs (to the DACs) and outputs (from the ADCs) use separate wires.
    pub width_bits: u32,
    /// Latency of the link, added once per transfer.
    pub latency: Ps,
    /// Format of the inputs sent to the tile.
    pub input_format: LinkFormat,
    /// Format of the outputs sent to the PMCA.
    pub output_format: LinkFormat,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            width_bits: 64,
            latency: Ps::from_ns(10),
            input_format: LinkFormat::Fp16,
            output_format: LinkFormat::Fp16,
        }
    }
}

impl LinkParams {
    pub fn bytes_per_cycle(&self) -> u64 {
        (self.width_bits / 8) as u64
    }
}

/// The shared on-chip SRAM (L2). The study gives neither its size nor its
/// bandwidth: these defaults are this project's assumption (a few MiB, as
/// Occamy-class chips carry, and one 512-bit port per cycle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L2Params {
    pub size: Bytes,
    /// Bytes per PMCA clock cycle the L2 serves, shared by all pairs.
    pub bytes_per_cycle: u64,
    /// Access latency added once per transfer.
    pub latency: Ps,
}

impl Default for L2Params {
    fn default() -> Self {
        L2Params {
            size: Bytes(4 << 20),
            bytes_per_cycle: 64,
            latency: Ps::from_ns(20),
        }
    }
}

/// When the LoRA branch runs relative to the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// The study's: a group's LoRA step starts once its tile outputs are in
    /// the TCDM.
    Study,
    /// `X A` runs while the tile integrates the same group; only `(X A) B`
    /// and the add wait for the tile outputs.
    Concurrent,
}

impl Architecture {
    /// Checks every section; the error is `path: what is wrong`.
    pub fn validate(&self) -> Result<(), String> {
        let prefix = |p: &str, r: Result<(), String>| r.map_err(|e| format!("{p}.{e}"));
        prefix("aimc", self.aimc.validate())?;
        prefix("pmca.cores", self.pmca.cores.validate())?;
        prefix("pmca.redmule", self.pmca.redmule.validate())?;
        prefix("pmca.tcdm", self.pmca.tcdm.validate())?;
        prefix("pmca.dma", self.pmca.dma.validate())?;
        if self.pairs == Some(0) {
            return Err("pairs: must be at least 1 (or None for as many as needed)".into());
        }
        if self.link.width_bits == 0 || self.link.width_bits % 8 != 0 {
            return Err(format!(
                "link.width_bits: {} is not a positive multiple of 8",
                self.link.width_bits
            ));
        }
        if self.pmca.attention_chunk_bytes.0 == 0 {
            return Err("pmca.attention_chunk_bytes: must be greater than zero".into());
        }
        if self.pmca.attention_chunk_bytes > self.pmca.tcdm.size {
            return Err(format!(
                "pmca.attention_chunk_bytes: {} is more than the TCDM ({})",
                self.pmca.attention_chunk_bytes, self.pmca.tcdm.size
            ));
        }
        if self.l2.bytes_per_cycle == 0 {
            return Err("l2.bytes_per_cycle: must be at least 1".into());
        }
        self.analog
            .pcm
            .validate()
            .map_err(|e| format!("analog.pcm: {e}"))?;
        self.analog
            .periphery
            .validate()
            .map_err(|e| format!("analog.periphery: {e}"))?;
        if self.l2.size == Bytes(0) {
            return Err("l2.size: must be greater than zero".into());
        }
        Ok(())
    }
}
