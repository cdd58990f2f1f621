//! Medians, p10/p90, the bootstrap confidence interval of a ratio of medians,
//! and the report table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub n: usize,
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn median_of_sorted(s: &[f64]) -> f64 {
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank quantile of sorted samples.
fn quantile_of_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * q).round() as usize]
}

pub fn median(samples: &[f64]) -> f64 {
    median_of_sorted(&sorted(samples))
}

pub fn stat(samples: &[f64]) -> Stat {
    let s = sorted(samples);
    Stat {
        median: median_of_sorted(&s),
        p10: quantile_of_sorted(&s, 0.1),
        p90: quantile_of_sorted(&s, 0.9),
        n: s.len(),
    }
}

/// A single figure (no spread): median = the value.
pub fn one(x: f64) -> Stat {
    Stat {
        median: x,
        p10: f64::NAN,
        p90: f64::NAN,
        n: 1,
    }
}

/// splitmix64: a fixed-seed generator, so a report's intervals are reproducible
/// from its JSON.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const BOOTSTRAP_RESAMPLES: usize = 2000;

/// 95 % percentile-bootstrap interval of median(value) / median(floor), each
/// sample set resampled with replacement on its own.
pub fn ratio_ci(value: &[f64], floor: &[f64]) -> (f64, f64) {
    let (v, f) = (sorted(value), sorted(floor));
    if v.is_empty() || f.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix(0x6b65_6373);
    let mut buf_v = vec![0.0; v.len()];
    let mut buf_f = vec![0.0; f.len()];
    let mut ratios = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for x in buf_v.iter_mut() {
            *x = v[rng.below(v.len())];
        }
        for x in buf_f.iter_mut() {
            *x = f[rng.below(f.len())];
        }
        buf_v.sort_by(|a, b| a.total_cmp(b));
        buf_f.sort_by(|a, b| a.total_cmp(b));
        ratios.push(median_of_sorted(&buf_v) / median_of_sorted(&buf_f));
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    (
        quantile_of_sorted(&ratios, 0.025),
        quantile_of_sorted(&ratios, 0.975),
    )
}

/// True when the 95 % interval of the ratio lies within ±`within` of the ratio
/// (the adaptive runs stop there).
pub fn settled(value: &[f64], floor: &[f64], within: f64) -> bool {
    // fewer samples give an interval of a handful of distinct values
    if value.len() < 3 || floor.len() < 3 {
        return false;
    }
    let r = median(value) / median(floor);
    let (lo, hi) = ratio_ci(value, floor);
    lo >= r * (1.0 - within) && hi <= r * (1.0 + within)
}

/// The lowest-median floor among the orders measured (the best valid order).
pub fn best<'a>(orders: &[(&'a str, &'a [f64])]) -> (&'a str, &'a [f64]) {
    *orders
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .min_by(|a, b| median(a.1).total_cmp(&median(b.1)))
        .expect("at least one floor order measured")
}

/// What the comparison is with: a floor (the library can never beat it; if it
/// does, the floor is wrong) or another peer (either may win).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Against {
    Floor,
    Peer,
}

/// One line of the report: a measurement, what it is compared with, the ratio of
/// the medians with its 95 % interval, and the target (reported, never asserted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub figure: String,
    pub unit: String,
    pub value: Stat,
    pub floor_name: String,
    pub floor: Option<Stat>,
    pub ratio: Option<f64>,
    pub ratio_ci95: Option<(f64, f64)>,
    pub target: String,
    /// yes / no / unclear (the interval straddles the target) / floor wrong
    pub verdict: String,
}

impl Row {
    /// A row compared with a floor or a peer: ratio = median(value) / median(floor).
    /// Met only when the whole 95 % interval is ≤ `max`.
    pub fn ratio(
        figure: &str,
        unit: &str,
        value: &[f64],
        floor_name: &str,
        floor: &[f64],
        against: Against,
        max: f64,
    ) -> Row {
        let (v, f) = (stat(value), stat(floor));
        let ratio = v.median / f.median;
        let (lo, hi) = ratio_ci(value, floor);
        let verdict = if against == Against::Floor && hi < 1.0 {
            // a floor the library beats (the whole interval below 1) is not the
            // minimum of the Docker calls
            "floor wrong".to_string()
        } else if hi <= max {
            "yes".to_string()
        } else if lo > max {
            "no".to_string()
        } else {
            "unclear".to_string()
        };
        Row {
            figure: figure.into(),
            unit: unit.into(),
            value: v,
            floor_name: floor_name.into(),
            floor: Some(f),
            ratio: Some(ratio),
            ratio_ci95: Some((lo, hi)),
            target: format!("≤ {max:.2}"),
            verdict,
        }
    }

    /// A row with an absolute target: met when the median ≤ max.
    pub fn absolute(figure: &str, unit: &str, value: Stat, target: &str, max: Option<f64>) -> Row {
        Row {
            figure: figure.into(),
            unit: unit.into(),
            value,
            floor_name: "-".into(),
            floor: None,
            ratio: None,
            ratio_ci95: None,
            target: target.into(),
            verdict: match max {
                Some(m) if value.median <= m => "yes".into(),
                Some(_) => "no".into(),
                None => "-".into(),
            },
        }
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | median | p10 | p90 | unit | compared with | its median | its p90 | ratio | 95 % CI | n | target | met |\n\
         |---|---:|---:|---:|---|---|---:|---:|---:|---|---:|---|---|\n",
    );
    for r in rows {
        let below_floor = r.verdict == "floor wrong"
            || (r.floor_name.starts_with("floor") && r.ratio.is_some_and(|x| x < 1.0));
        let ratio = match r.ratio {
            // never print a ratio below 1 against a floor
            Some(_) if r.verdict == "floor wrong" => "floor beaten".to_string(),
            Some(_) if below_floor => "≈ 1 (at the floor, within noise)".to_string(),
            Some(x) => format!("{x:.3}"),
            None => "-".into(),
        };
        let ci = r
            .ratio_ci95
            .map(|(lo, hi)| format!("{lo:.3}–{hi:.3}"))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.figure,
            num(r.value.median),
            num(r.value.p10),
            num(r.value.p90),
            r.unit,
            r.floor_name,
            r.floor.map(|f| num(f.median)).unwrap_or_else(|| "-".into()),
            r.floor.map(|f| num(f.p90)).unwrap_or_else(|| "-".into()),
            ratio,
            ci,
            r.value.n,
            r.target,
            match r.verdict.as_str() {
                "yes" => "yes".to_string(),
                "-" => "-".to_string(),
                "floor wrong" => "**floor wrong** (library below it)".to_string(),
                "unclear" => "**unclear** (CI straddles)".to_string(),
                other => format!("**{other}**"),
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        let s = stat(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.p10, s.p90, s.n), (3.0, 1.0, 5.0, 5));
        assert_eq!(stat(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
    }

    #[test]
    fn ratio_interval_contains_the_ratio_and_narrows_with_runs() {
        let v: Vec<f64> = (0..40).map(|i| 110.0 + (i % 7) as f64).collect();
        let f: Vec<f64> = (0..40).map(|i| 100.0 + (i % 5) as f64).collect();
        let r = median(&v) / median(&f);
        let (lo, hi) = ratio_ci(&v, &f);
        assert!(lo <= r && r <= hi, "{lo} {r} {hi}");
        assert!(settled(&v, &f, 0.05));
        let wide = [50.0, 200.0, 90.0];
        assert!(!settled(&wide, &f[..3], 0.05));
    }

    #[test]
    fn verdicts() {
        let f = [100.0; 10];
        let ok = Row::ratio("x", "ms", &[105.0; 10], "f", &f, Against::Floor, 1.15);
        assert_eq!(ok.verdict, "yes");
        let bad = Row::ratio("x", "ms", &[130.0; 10], "f", &f, Against::Floor, 1.15);
        assert_eq!(bad.verdict, "no");
        let beaten = Row::ratio("x", "ms", &[90.0; 10], "floor", &f, Against::Floor, 1.15);
        assert_eq!(beaten.verdict, "floor wrong");
        assert!(markdown(&[beaten]).contains("floor beaten"));
        // below 1 only by noise: at the floor, no ratio below 1 printed
        let noisy = [90.0, 110.0, 95.0, 105.0, 99.0];
        let at = Row::ratio(
            "x",
            "ms",
            &noisy,
            "floor",
            &[100.0; 5],
            Against::Floor,
            1.15,
        );
        assert_eq!(at.verdict, "yes");
        assert!(markdown(&[at]).contains("at the floor"));
        let peer = Row::ratio("x", "ms", &[90.0; 10], "f", &f, Against::Peer, 0.95);
        assert_eq!(peer.verdict, "yes");
        let straddle = [100.0, 130.0, 105.0, 125.0, 110.0, 120.0];
        let unclear = Row::ratio("x", "ms", &straddle, "f", &f, Against::Floor, 1.15);
        assert_eq!(unclear.verdict, "unclear");
    }

    #[test]
    fn best_order_is_the_lowest_median() {
        let (name, _) = best(&[("parallel", &[3.0, 4.0]), ("sequential", &[2.0, 3.0])]);
        assert_eq!(name, "sequential");
    }
}
