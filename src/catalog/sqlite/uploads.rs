//! The upload journal: multipart uploads from their start to their end.

use chrono::Utc;
use rusqlite::params;

use super::SqliteCatalog;
use crate::catalog::uploads::{OpenUpload, UploadJournal};
use crate::catalog::{Result, RunId, rfc3339_micros as ts, rows, sql};

impl UploadJournal for SqliteCatalog {
    fn upload_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.prepare_cached(
            "INSERT OR REPLACE INTO open_uploads (target, upload_id, key, started_at, run) VALUES (?, ?, ?, ?, ?)",
        )
        .and_then(|mut s| {
            s.execute(params![
                target,
                upload_id,
                key,
                ts(Utc::now()),
                run.map(|r| r.0)
            ])
        })
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    fn upload_ended(&self, target: &str, upload_id: &str) -> Result<()> {
        let conn = self.writer.lock().expect("catalog writer lock");
        conn.prepare_cached(sql::UPLOAD_ENDED.sqlite)
            .and_then(|mut s| s.execute(params![target, upload_id]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn abandoned_uploads(&self, target: &str, run: Option<RunId>) -> Result<Vec<OpenUpload>> {
        self.with_reader(|conn| {
            self.rows(
                conn,
                "SELECT key, upload_id FROM open_uploads u WHERE target = ?1 \
                 AND (u.run IS NULL OR u.run IS ?2 OR NOT EXISTS \
                      (SELECT 1 FROM job_runs j WHERE j.id = u.run AND j.status = 'running')) \
                 ORDER BY started_at, upload_id",
                params![target, run.map(|r| r.0)],
                |r| rows::open_upload(r),
            )
        })
    }
}
