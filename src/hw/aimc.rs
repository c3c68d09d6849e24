//! The AIMC tile: a `rows x cols` PCM crossbar with DACs on the rows and
//! ADCs on the columns. Owns the tile's timing parameters and the latency of
//! a group of back-to-back MVMs.
//!
//! Timing rule (REFERENCE.md §1, §6): while token `i` integrates, the DACs
//! load token `i+1` and the ADCs read out token `i-1`, so back-to-back tokens
//! take one period each, where the period is the longest of the three steps
//! (normally the integration time). A group therefore takes
//! `latency + load + settle + (t-1) * period + integration + readout`, where
//! `load` is one token's input transfer and `latency` the link's, paid once
//! because back-to-back transfers pipeline.

use crate::units::{Hz, Ps};
use serde::{Deserialize, Serialize};

/// Parameters of one AIMC tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AimcParams {
    /// Crossbar rows: inputs of the MVM (one DAC each).
    pub rows: u32,
    /// Crossbar columns: outputs of the MVM (one ADC each).
    pub cols: u32,
    /// DAC resolution in bits.
    pub dac_bits: u32,
    /// ADC resolution in bits.
    pub adc_bits: u32,
    /// Analog integration time of one MVM (one token).
    pub integration_time: Ps,
    /// Time for the DACs to settle on a token's inputs once its data has
    /// arrived in the tile's input register (the data transfer itself is the
    /// link's and is timed separately).
    pub dac_settle_time: Ps,
    /// Time to convert and read out one token's outputs. HERMES' CCO ADCs
    /// take 300 ps per LSB, i.e. ~77 ns for 8 bits (Le Gallo et al. 2023).
    pub adc_readout_time: Ps,
    /// Clock of the tile's digital periphery (affine scale, I/O registers).
    pub clock: Hz,
    /// Time to program one row of PCM devices (once, before inference).
    pub programming_time_per_row: Ps,
}

impl Default for AimcParams {
    fn default() -> Self {
        AimcParams {
            rows: 512,
            cols: 512,
            dac_bits: 8,
            adc_bits: 8,
            integration_time: Ps::from_ns(256),
            dac_settle_time: Ps::from_ns(2),
            adc_readout_time: Ps(76_800),
            clock: Hz(1_000_000_000),
            programming_time_per_row: Ps::from_ns(1000),
        }
    }
}

impl AimcParams {
    /// Checks the parameters; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.rows == 0 {
            return Err("rows: must be at least 1".into());
        }
        if self.cols == 0 {
            return Err("cols: must be at least 1".into());
        }
        for (name, bits) in [("dac_bits", self.dac_bits), ("adc_bits", self.adc_bits)] {
            if !(1..=16).contains(&bits) {
                return Err(format!("{name}: {bits} bits is outside 1..=16"));
            }
        }
        if self.integration_time == Ps::ZERO {
            return Err("integration_time: must be greater than zero".into());
        }
        Ok(())
    }

    /// Latency of a group of `tokens` back-to-back MVMs on the tile, from the
    /// moment the first token's inputs start towards the tile to the last
    /// token's outputs being read out. `load` is the time to move one token's
    /// inputs into the input register, `latency` the link's latency.
    pub fn group_latency(&self, tokens: u64, load: Ps, latency: Ps) -> Ps {
        if tokens == 0 {
            return Ps::ZERO;
        }
        let first_load = latency + load + self.dac_settle_time;
        let period = self.token_period(load);
        first_load + period * (tokens - 1) + self.integration_time + self.adc_readout_time
    }

    /// Time between the starts of two back-to-back tokens' integrations: the
    /// slowest of integrating, loading the next token and reading out the
    /// previous one (they overlap).
    pub fn token_period(&self, load: Ps) -> Ps {
        self.integration_time
            .max(load + self.dac_settle_time)
            .max(self.adc_readout_time)
    }

    /// Weights one tile holds.
    pub fn cells(&self) -> u64 {
        self.rows as u64 * self.cols as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_latency_is_t_integrations_plus_first_load_and_last_readout() {
        let p = AimcParams::default();
        // link latency 10 ns + load 64 ns + settle 2 ns, then 8 x 256 ns,
        // then 76.8 ns readout: 76 + 7*256 + 256 + 76.8 = 2200.8 ns.
        let (load, lat) = (Ps::from_ns(64), Ps::from_ns(10));
        assert_eq!(p.group_latency(8, load, lat), Ps(2_200_800));
        assert_eq!(p.group_latency(0, load, lat), Ps::ZERO);
    }

    #[test]
    fn a_slow_load_sets_the_period() {
        let p = AimcParams {
            integration_time: Ps::from_ns(128),
            ..AimcParams::default()
        };
        // load 200 ns + 2 ns settle > 128 ns integration: period 202 ns.
        // 202 + 3*202 + 128 + 76.8 = 1012.8 ns.
        assert_eq!(p.token_period(Ps::from_ns(200)), Ps::from_ns(202));
        assert_eq!(
            p.group_latency(4, Ps::from_ns(200), Ps::ZERO),
            Ps(1_012_800)
        );
    }

    #[test]
    fn validation_names_the_field() {
        let p = AimcParams {
            rows: 0,
            ..AimcParams::default()
        };
        assert!(p.validate().unwrap_err().starts_with("rows"));
        let p = AimcParams {
            adc_bits: 0,
            ..AimcParams::default()
        };
        assert!(p.validate().unwrap_err().starts_with("adc_bits"));
    }
}
