//! The static dashboard, served by the host (filled in by the dashboard work).

use warp::{Filter, Rejection, Reply};

/// The dashboard's routes under `/admin/monitor/` (none yet).
pub fn routes() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("dashboard-not-built-yet").map(warp::reply)
}
