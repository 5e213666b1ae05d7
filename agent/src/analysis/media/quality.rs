//! Listening quality estimate from RTP statistics: a simplified ITU-T G.107
//! E-model (R factor) and its mapping to MOS (G.107 Annex B).
//!
//! R = Ro − Is − Id − Ie,eff + A with the G.107 default values, for which
//! Ro − Is = 93.2 and A = 0. Simplifications, stated so nobody mistakes the
//! number for a measured MOS:
//! - Id is the delay impairment Idd (G.107 7.2) of the mouth-to-ear delay
//!   Ta; the echo terms Idte/Idle are taken as 0 (echo well cancelled).
//! - Ta cannot be measured from one-way RTP. It is estimated as the assumed
//!   network one-way delay ([`QualityAssumptions::network_delay_ms`],
//!   default 40 ms) + a jitter buffer of `jitter_buffer_factor` × the
//!   measured interarrival jitter (default 2×, an adaptive buffer's usual
//!   depth, at least `min_jitter_buffer_ms`) + the codec's packetisation and
//!   look-ahead delay.
//! - Packets the jitter buffer discards as too late are not modelled: the
//!   loss is the RFC 3550 network loss only. Loss is taken as random
//!   (BurstR = 1).
//! - Ie and Bpl per codec from ITU-T G.113 Appendix I.

use super::codec::VoiceCodec;

/// Equipment impairment and loss robustness of a codec (G.113 Appendix I).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CodecImpairment {
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
    /// Packetisation + algorithmic (look-ahead) delay in ms.
    pub codec_delay_ms: f64,
}

impl CodecImpairment {
    /// G.113 Appendix I values. G.711 assumes packet loss concealment
    /// (G.711 Appendix I, Bpl 25.1), which every PBX stack implements; see
    /// [`CodecImpairment::G711_WITHOUT_PLC`] for the other case.
    pub(crate) fn for_codec(codec: VoiceCodec) -> Self {
        match codec {
            VoiceCodec::G711 | VoiceCodec::G722 => Self {
                ie: 0.0,
                bpl: 25.1,
                codec_delay_ms: 20.0,
            },
            VoiceCodec::G729 => Self {
                ie: 11.0,
                bpl: 19.0,
                codec_delay_ms: 25.0,
            },
            VoiceCodec::G723 => Self {
                ie: 15.0,
                bpl: 16.1,
                codec_delay_ms: 37.5,
            },
            VoiceCodec::Gsm => Self {
                ie: 20.0,
                bpl: 10.0,
                codec_delay_ms: 20.0,
            },
            // Unknown codec: no intrinsic impairment assumed, but a low loss
            // robustness so loss is not underrated.
            VoiceCodec::Other => Self {
                ie: 0.0,
                bpl: 10.0,
                codec_delay_ms: 20.0,
            },
        }
    }

    /// G.711 without packet loss concealment (G.113 Appendix I: Bpl 4.3).
    #[cfg(test)]
    pub(crate) const G711_WITHOUT_PLC: Self = Self {
        ie: 0.0,
        bpl: 4.3,
        codec_delay_ms: 20.0,
    };
}

/// The delay assumptions of the estimate (see module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityAssumptions {
    pub network_delay_ms: f64,
    pub jitter_buffer_factor: f64,
    pub min_jitter_buffer_ms: f64,
}

impl Default for QualityAssumptions {
    fn default() -> Self {
        Self {
            network_delay_ms: 40.0,
            jitter_buffer_factor: 2.0,
            min_jitter_buffer_ms: 20.0,
        }
    }
}

/// Thresholds beyond which `media.quality` is raised. Configurable; the
/// defaults follow common operator practice (ITU-T Y.1541 class 0 allows
/// 1e-3 loss; above 1 % and 30 ms jitter calls are audibly degraded; MOS
/// 3.6 is the lower edge of "satisfied" users in G.107 Annex B).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityThresholds {
    pub max_loss_percent: f64,
    pub max_jitter_ms: f64,
    pub min_mos: f64,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        Self {
            max_loss_percent: 1.0,
            max_jitter_ms: 30.0,
            min_mos: 3.6,
        }
    }
}

/// The E-model result for one direction of a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QualityEstimate {
    pub r_factor: f64,
    pub mos: f64,
    /// The estimated mouth-to-ear delay Ta the R factor used.
    pub mouth_to_ear_ms: f64,
    pub ie_eff: f64,
    pub id: f64,
}

/// G.107 (7.2) delay impairment Idd for mouth-to-ear delay `ta_ms`.
pub(crate) fn delay_impairment(ta_ms: f64) -> f64 {
    if ta_ms <= 100.0 {
        return 0.0;
    }
    let x = (ta_ms / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// G.107 (7.8) effective equipment impairment with random loss (BurstR = 1).
pub(crate) fn effective_equipment_impairment(codec: CodecImpairment, loss_percent: f64) -> f64 {
    let ppl = loss_percent.clamp(0.0, 100.0);
    codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl)
}

/// G.107 Annex B (B.4): MOS from R.
pub(crate) fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    }
}

/// Estimates R and MOS for a stream direction with `loss_percent` loss and
/// `jitter_ms` interarrival jitter.
pub(crate) fn estimate(
    codec: CodecImpairment,
    loss_percent: f64,
    jitter_ms: f64,
    assumptions: QualityAssumptions,
) -> QualityEstimate {
    let jitter_buffer = (assumptions.jitter_buffer_factor * jitter_ms.max(0.0))
        .max(assumptions.min_jitter_buffer_ms);
    let ta = assumptions.network_delay_ms + jitter_buffer + codec.codec_delay_ms;
    let id = delay_impairment(ta);
    let ie_eff = effective_equipment_impairment(codec, loss_percent);
    let r = 93.2 - id - ie_eff;
    QualityEstimate {
        r_factor: r,
        mos: mos_from_r(r),
        mouth_to_ear_ms: ta,
        ie_eff,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn mos_for_known_r_values() {
        // Hand-computed from G.107 B.4.
        assert!(close(mos_from_r(93.2), 4.4093, 1e-4));
        assert!(close(mos_from_r(80.0), 4.024, 1e-9));
        assert!(close(mos_from_r(50.0), 2.575, 1e-9));
        assert!(close(mos_from_r(60.0), 3.1, 1e-9));
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
    }

    #[test]
    fn delay_impairment_is_zero_up_to_100ms_and_grows_after() {
        assert_eq!(delay_impairment(80.0), 0.0);
        assert_eq!(delay_impairment(100.0), 0.0);
        // Ta = 200 ms: X = 1 → 25 × (2^(1/6) − 3(1 + 3^-6)^(1/6) + 2).
        let x3 = (1.0f64 + 1.0 / 729.0).powf(1.0 / 6.0);
        let expect = 25.0 * (2f64.powf(1.0 / 6.0) - 3.0 * x3 + 2.0);
        assert!(close(delay_impairment(200.0), expect, 1e-12));
        assert!(delay_impairment(400.0) > delay_impairment(200.0));
    }

    #[test]
    fn ie_eff_follows_g107_with_g113_bpl() {
        let g711 = CodecImpairment::for_codec(VoiceCodec::G711);
        assert_eq!(effective_equipment_impairment(g711, 0.0), 0.0);
        // 1 % loss, Bpl 25.1: 95 × 1/26.1.
        assert!(close(
            effective_equipment_impairment(g711, 1.0),
            95.0 / 26.1,
            1e-12
        ));
        let g729 = CodecImpairment::for_codec(VoiceCodec::G729);
        assert!(close(
            effective_equipment_impairment(g729, 2.0),
            11.0 + 84.0 * 2.0 / 21.0,
            1e-12
        ));
        assert!(
            effective_equipment_impairment(CodecImpairment::G711_WITHOUT_PLC, 1.0)
                > effective_equipment_impairment(g711, 1.0) * 4.0
        );
    }

    #[test]
    fn clean_g711_call_scores_the_e_model_maximum() {
        let q = estimate(
            CodecImpairment::for_codec(VoiceCodec::G711),
            0.0,
            1.0,
            QualityAssumptions::default(),
        );
        // Ta = 40 + 20 (min buffer) + 20 = 80 ms ≤ 100: R = 93.2.
        assert!(close(q.mouth_to_ear_ms, 80.0, 1e-9));
        assert!(close(q.r_factor, 93.2, 1e-9));
        assert!(close(q.mos, 4.4093, 1e-4));
    }

    #[test]
    fn loss_and_jitter_lower_the_score_monotonically() {
        let g711 = CodecImpairment::for_codec(VoiceCodec::G711);
        let a = QualityAssumptions::default();
        let clean = estimate(g711, 0.0, 5.0, a).mos;
        let lossy = estimate(g711, 5.0, 5.0, a).mos;
        let jittery = estimate(g711, 5.0, 80.0, a).mos;
        assert!(
            clean > lossy && lossy > jittery,
            "{clean} {lossy} {jittery}"
        );
        // 5 % loss on G.711 with PLC: R = 93.2 − 95×5/30.1 ≈ 77.4 → MOS ≈ 3.9.
        assert!(close(
            estimate(g711, 5.0, 5.0, a).r_factor,
            93.2 - 95.0 * 5.0 / 30.1,
            1e-9
        ));
        let g729 = CodecImpairment::for_codec(VoiceCodec::G729);
        assert!(estimate(g729, 0.0, 5.0, a).mos < clean);
    }
}
