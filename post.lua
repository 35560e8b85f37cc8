wrk.method = "POST"
wrk.body = '{"model":"fast","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY")
