#pragma once

/// Everything tame's core offers, in one include.

#include <tame/error.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore.hpp>
#include <tame/semaphore_stats.hpp>
#include <tame/wait_group.hpp>
