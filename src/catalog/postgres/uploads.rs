//! The upload journal: multipart uploads from their start to their end.

use chrono::Utc;

use super::{PostgresCatalog, micros};
use crate::catalog::uploads::{OpenUpload, UploadJournal};
use crate::catalog::{Result, RunId, rows, sql};

impl UploadJournal for PostgresCatalog {
    fn upload_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        run: Option<RunId>,
    ) -> Result<()> {
        let now = micros(Utc::now());
        let run = run.map(|r| r.0);
        self.autocommit(|s| {
            s.execute(
                "INSERT INTO open_uploads (target, upload_id, key, started_at, run) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (target, upload_id) DO UPDATE SET key = EXCLUDED.key, \
                 started_at = EXCLUDED.started_at, run = EXCLUDED.run",
                &[&target, &upload_id, &key, &now, &run],
            )
            .map(drop)
        })
    }

    fn upload_ended(&self, target: &str, upload_id: &str) -> Result<()> {
        self.autocommit(|s| {
            s.execute(sql::UPLOAD_ENDED.postgres, &[&target, &upload_id])
                .map(drop)
        })
    }

    fn abandoned_uploads(&self, target: &str, run: Option<RunId>) -> Result<Vec<OpenUpload>> {
        let run = run.map(|r| r.0);
        self.autocommit(|s| {
            let found = s.query(
                "SELECT key, upload_id FROM open_uploads u WHERE target = $1 \
                 AND (u.run IS NULL OR u.run IS NOT DISTINCT FROM $2 OR NOT EXISTS \
                      (SELECT 1 FROM job_runs j WHERE j.id = u.run AND j.status = 'running')) \
                 ORDER BY started_at, upload_id",
                &[&target, &run],
            )?;
            self.rows(found, |r| rows::open_upload(r))
        })
    }
}
