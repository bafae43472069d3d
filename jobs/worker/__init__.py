"""What runs in the qcluster worker processes: a claimed chunk measured under its lease, the fetch
loop, the image fetcher and header reader, the watchdog, and the completion callbacks' POST."""
