#pragma once

/// Everything of tame::http: the server, its router and request context, JSON
/// helpers, metrics, the signal helper and the client.

#include <tame/http/client.hpp>
#include <tame/http/json.hpp>
#include <tame/http/message.hpp>
#include <tame/http/metrics.hpp>
#include <tame/http/request_context.hpp>
#include <tame/http/router.hpp>
#include <tame/http/server.hpp>
#include <tame/http/server_options.hpp>
#include <tame/http/signals.hpp>
