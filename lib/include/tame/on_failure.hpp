#pragma once

namespace tame {

/// What a task_group does when one of its tasks fails (an exception escapes it).
enum class on_failure {
    /// Go's errgroup: the failure cancels the other tasks and the group starts no
    /// more; the join reports it. The default, for work that fails as a whole.
    cancel_group,
    /// A supervisor: the other tasks go on and new spawns are taken; the join
    /// still reports the first failure. For independent jobs a service owns.
    keep_going,
};

} // namespace tame
