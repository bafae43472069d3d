# Read by gunicorn from the directory it starts in (bin/run, the tests, the benchmarks, the image).
# An over-long URL reaches Django, which answers it in JSON like any bad query (at most 1,000 query
# fields, DATA_UPLOAD_MAX_NUMBER_FIELDS), instead of gunicorn's HTML 414 past 4,094 bytes. A proxy in
# front is where to cap the bytes.
limit_request_line = 0
