//! Behaviour of patrol-anomaly-detect. Synthetic data comes from `synth`
//! (seeded, deterministic); score cases are files in `cases/score/`.

mod baselines;
mod exceedances;
mod index_series;
mod robust_z;
mod scoring;
mod seasonal;
mod shifts;
mod synth;
mod tuning;
mod warmup;
