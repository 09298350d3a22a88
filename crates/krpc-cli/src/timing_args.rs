//! Timing options of the consumers inside `krpc` commands, each mirroring a Java consumer
//! setting. Unset, they keep the library's defaults (which are the Java client's); the test
//! harness, `scripts/demo` and the benches set them through the environment for the test
//! broker, which answers a waiting fetch only when its wait runs out.

use std::time::Duration;

/// Parses a DURATION option: humantime (`500ms`, `10s`, `1m 30s`), or a plain number of
/// seconds (`0.5`, `30`) as the float-seconds options of earlier versions took. Every duration
/// option of `krpc` goes through this one parser, under the value name `DURATION`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is not a duration (write e.g. 500ms, 10s, 1m)"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 10s, 1m)"))
}

/// Parses a DURATION that must be above zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be above zero".into()),
        d => Ok(d),
    }
}

/// The fetch wait of the command's consumer (request consumer, reply reader, wire-demo fetcher).
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// How long the broker may hold a fetch while no record is there (`fetch.max.wait.ms`;
    /// default 500ms). Apache Kafka answers as soon as a record arrives; a broker that waits
    /// the whole time (the test broker) needs a small value, e.g. 10ms.
    #[arg(long, env = "KRPC_FETCH_MAX_WAIT", value_name = "DURATION", value_parser = duration)]
    pub fetch_max_wait: Option<Duration>,
}

/// The consumer-group timings of `krpc serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct GroupArgs {
    /// A server that stops heartbeating loses its partitions after this long
    /// (`session.timeout.ms`; default 45s).
    #[arg(long, env = "KRPC_SESSION_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub session_timeout: Option<Duration>,
    /// Time between heartbeats (`heartbeat.interval.ms`; default 3s, at most a third of the
    /// session timeout).
    #[arg(long, env = "KRPC_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = duration)]
    pub heartbeat_interval: Option<Duration>,
    /// How often answered requests' offsets are committed (`auto.commit.interval.ms`;
    /// default 5s).
    #[arg(long, env = "KRPC_COMMIT_INTERVAL", value_name = "DURATION", value_parser = duration)]
    pub commit_interval: Option<Duration>,
}

impl GroupArgs {
    /// Applies the options given to `options`; with only `--session-timeout` given, the
    /// heartbeat interval becomes a third of it if the default would be longer.
    pub fn apply(&self, options: &mut kafka_rpc::ServerOptions) -> Result<(), String> {
        if let Some(t) = self.session_timeout {
            options.session_timeout = t;
            options.heartbeat_interval = options.heartbeat_interval.min(t / 3);
        }
        if let Some(t) = self.heartbeat_interval {
            options.heartbeat_interval = t;
        }
        if let Some(t) = self.commit_interval {
            options.commit_interval = t;
        }
        if options.heartbeat_interval.is_zero()
            || options.heartbeat_interval >= options.session_timeout
        {
            return Err(format!(
                "--heartbeat-interval ({:?}) must be above zero and below --session-timeout ({:?})",
                options.heartbeat_interval, options.session_timeout
            ));
        }
        if options.commit_interval.is_zero() {
            return Err("--commit-interval must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humantime_or_plain_seconds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert!(duration("-1").is_err());
        assert!(duration("NaN").is_err());
        assert!(duration("soon").is_err());
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("0").is_err());
    }
}
