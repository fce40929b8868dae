-- jitsi-ops STAND-IN (tests only): GET /health on prosody's HTTP port, like the real image's
-- health endpoint: "OK" to local callers (127.0.0.1 / ::1), 403 to everyone else, so only
-- `docker compose exec prosody healthcheck.sh` can use it.
module:depends("http");

local function is_local(ip)
	return ip == "127.0.0.1" or ip == "::1" or ip == "::ffff:127.0.0.1";
end

module:provides("http", {
	default_path = "/health";
	route = {
		["GET"] = function(event)
			local ip = event.request.ip or (event.request.conn and event.request.conn:ip());
			if not is_local(ip) then
				event.response.status_code = 403;
				return "Forbidden";
			end
			event.response.headers.content_type = "text/plain";
			return "OK";
		end;
	};
});
