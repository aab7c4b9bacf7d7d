"""Talking to the study server: enrollment, upload, withdrawal, protocol refresh (docs/ARCHITECTURE.md section 9).

The one constant here is read by the app at start (studyapp.participation) without loading httpx or the keyring.
"""

# Set in settings while a withdrawal waits for the server's confirmation: {"study_id", "server_url",
# "participant_id"}; background sync retries the request until it is confirmed.
WITHDRAWAL_PENDING_KEY = "sync.withdrawal_pending"
