#pragma once

/// Everything tame's core offers, in one include.

#include <tame/adaptive_limit.hpp>
#include <tame/adaptive_permit.hpp>
#include <tame/adaptive_shedder.hpp>
#include <tame/aimd_limit.hpp>
#include <tame/breaker.hpp>
#include <tame/cancel_source.hpp>
#include <tame/deadline.hpp>
#include <tame/error.hpp>
#include <tame/gradient2_limit.hpp>
#include <tame/keyed.hpp>
#include <tame/limit_algorithm.hpp>
#include <tame/on_failure.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore.hpp>
#include <tame/semaphore_stats.hpp>
#include <tame/task_group.hpp>
#include <tame/task_pool.hpp>
#include <tame/task_pool_options.hpp>
#include <tame/wait_group.hpp>
#include <tame/with_breaker.hpp>
#include <tame/with_task_group.hpp>
