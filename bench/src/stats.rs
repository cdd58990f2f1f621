//! Medians, p90s and the report table.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub p90: f64,
    pub n: usize,
}

pub fn stat(samples: &[f64]) -> Stat {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> f64 {
        if s.is_empty() {
            return f64::NAN;
        }
        let idx = ((s.len() - 1) as f64 * q).round() as usize;
        s[idx]
    };
    let median = if s.is_empty() {
        f64::NAN
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    Stat {
        median,
        p90: pick(0.9),
        n: s.len(),
    }
}

/// One line of the report: a measurement, what it is compared with, the ratio of
/// the medians, and the target (reported, never asserted).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: String,
    pub unit: String,
    pub value: Stat,
    pub floor_name: String,
    pub floor: Option<Stat>,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

impl Row {
    /// A row compared with a floor: ratio = value / floor, met when ratio ≤ max.
    pub fn ratio(
        figure: &str,
        unit: &str,
        value: Stat,
        floor_name: &str,
        floor: Stat,
        max: f64,
    ) -> Row {
        let ratio = value.median / floor.median;
        Row {
            figure: figure.into(),
            unit: unit.into(),
            value,
            floor_name: floor_name.into(),
            floor: Some(floor),
            ratio: Some(ratio),
            target: format!("≤ {max:.2}"),
            met: Some(ratio <= max),
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
            target: target.into(),
            met: max.map(|m| value.median <= m),
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
    let mut out = String::from("| figure | median | p90 | unit | compared with | its median | ratio | target | met |\n|---|---:|---:|---|---|---:|---:|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.figure,
            num(r.value.median),
            num(r.value.p90),
            r.unit,
            r.floor_name,
            r.floor.map(|f| num(f.median)).unwrap_or_else(|| "-".into()),
            r.ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into()),
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_and_p90() {
        let s = super::stat(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.p90, s.n), (3.0, 5.0, 5));
        let s = super::stat(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.median, 2.5);
    }
}
