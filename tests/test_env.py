"""DriveEnv: Gymnasium's checker, the same episode as `drivesim run`, rewards and endings, vector envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from drivesim_carla.agents.autopilot import Autopilot
from drivesim_carla.env import COMMANDS, ENV_ID, DiscreteActions, DriveEnv
from drivesim_carla.episode import EpisodeConfig, assemble
from drivesim_carla.errors import DrivesimError

SMALL = {"width": 96, "height": 48, "frames": 200}
STRAIGHT = np.array([0.0, 1.0, 0.0], np.float32)  # full throttle, wheel straight


@pytest.fixture(scope="module")
def env():
    e = DriveEnv(SMALL, render_mode="rgb_array")
    yield e
    e.close()


def test_gymnasium_env_checker_passes():
    env = gym.make(ENV_ID, config=SMALL, render_mode="rgb_array", observe=("semantic", "depth"))
    try:
        check_env(env.unwrapped)
        obs, _ = env.reset(seed=1)
        assert set(obs) == {"image", "speed", "command", "semantic", "depth"}
        assert obs["semantic"].shape == (48, 96) and obs["depth"].dtype == np.float32
    finally:
        env.close()


def test_driven_by_the_autopilot_it_is_the_drivesim_run_episode(env):
    """The env's episode for seed S is `drivesim run --seed S`'s: the autopilot's actions through
    `step` drive the same metres and see the same last frame."""
    pilot = Autopilot()
    obs, info = env.reset(seed=4)
    pilot.reset(env.loop.obs.route)
    assert info["frames"] == 0
    for _ in range(60):
        c = pilot.act(env.loop.obs)
        obs, reward, terminated, truncated, info = env.step(np.array([c.steer, c.throttle, c.brake], np.float32))
    with assemble(EpisodeConfig(seed=4, frames=60, width=96, height=48)) as episode:
        result = episode.run()
    assert round(info["distance_m"], 4) == result.summary["distance_m"]
    assert info["frames"] == 60 and not (terminated or truncated)
    np.testing.assert_array_equal(obs["image"], result.last_frame.camera.rgb)
    np.testing.assert_array_equal(env.render(), obs["image"])
    assert obs["speed"][0] == pytest.approx(result.last_frame.ego.speed)


def test_the_command_announces_the_next_turn_within_ten_metres():
    from drivesim_carla.route import RoadOption, Route, Waypoint

    options = [RoadOption.LANEFOLLOW] * 15 + [RoadOption.LEFT] * 5 + [RoadOption.LANEFOLLOW] * 10
    route = Route([Waypoint(float(i), 0.0, 0.0, float(i), 0, -1, 0, option=o) for i, o in enumerate(options)])
    assert route.command_at(0.0, 10.0) == RoadOption.LANEFOLLOW
    assert route.command_at(5.5, 10.0) == RoadOption.LEFT
    assert route.command_at(17.0, 10.0) == RoadOption.LEFT
    assert route.command_at(20.5, 10.0) == RoadOption.LANEFOLLOW
    assert COMMANDS.index(RoadOption.LEFT) == 2


def test_rewards_add_up_to_progress_and_penalties(env):
    """Seed 2, full throttle straight ahead: the car hits something at step 126; the rewards are
    the metres of route progress plus -50 for the collision, and the collision ends the episode."""
    obs, _ = env.reset(seed=2)
    start = env.loop.obs.frame.ego.route_progress
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(STRAIGHT)
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert terminated and not truncated and info["collisions"] == 1 and info["events"] == ["collision"]
    progress = env.loop.obs.frame.ego.route_progress - start
    penalties = -50.0 * info["collisions"] - 5.0 * info["lane_invasions"] - 10.0 * info["off_road"]
    assert total == pytest.approx(progress + penalties, abs=1e-6)
    assert steps == 126


def test_weights_and_endings_are_settings():
    env = DriveEnv({**SMALL, "frames": 5}, reward={"progress": 0.0, "step": -1.0}, end_on_collision=False)
    try:
        env.reset(seed=2)
        rewards, ended = [], None
        for _ in range(5):
            _, r, terminated, truncated, _ = env.step(STRAIGHT)
            rewards.append(r)
            ended = (terminated, truncated)
        assert rewards == [-1.0] * 5 and ended == (False, True)
    finally:
        env.close()


def test_reset_without_a_seed_draws_from_the_env_rng(env):
    env.reset(seed=11)
    a = env.reset()[0]["image"]
    env.reset(seed=11)
    b = env.reset()[0]["image"]
    np.testing.assert_array_equal(a, b)  # the env's generator, seeded by the first reset


def test_discrete_actions_index_a_table(env):
    wrapped = DiscreteActions(env)
    assert wrapped.action_space == gym.spaces.Discrete(len(DiscreteActions.TABLE))
    np.testing.assert_array_equal(wrapped.action(1), np.array([0.0, 0.6, 0.0], np.float32))
    with pytest.raises(DrivesimError, match="action space"):
        DiscreteActions(env, table=((0.0, 2.0, 0.0),))


def test_bad_arguments_are_one_line():
    with pytest.raises(DrivesimError, match="observe: unknown stream"):
        DriveEnv(SMALL, observe=("lidar",))
    with pytest.raises(DrivesimError, match="writes no outputs"):
        DriveEnv({**SMALL, "outputs": {"summary": "s.json"}})
    with pytest.raises(DrivesimError, match="unknown key 'progres'"):
        DriveEnv(SMALL, reward={"progres": 1.0})


def test_async_vector_env_gives_what_single_envs_give():
    """Two worker processes, seeds 3 and 8, 100 steps: the observations of single envs."""
    seeds, n = [3, 8], 100
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform([-0.2, 0.2, 0.0], [0.2, 0.5, 0.0], (n, 3)) for _ in seeds], 1).astype(np.float32)
    vec = gym.vector.AsyncVectorEnv([lambda: DriveEnv(SMALL) for _ in seeds])
    try:
        obs, _ = vec.reset(seed=seeds)
        vec_images = [obs["image"].copy()]
        vec_speeds = []
        for k in range(n):
            obs, _, terminated, truncated, _ = vec.step(actions[k])
            assert not (terminated.any() or truncated.any())
            vec_images.append(obs["image"].copy())
            vec_speeds.append(obs["speed"][:, 0].copy())
    finally:
        vec.close()
    for i, seed in enumerate(seeds):
        single = DriveEnv(SMALL)
        try:
            obs, _ = single.reset(seed=seed)
            np.testing.assert_array_equal(obs["image"], vec_images[0][i])
            for k in range(n):
                obs, *_ = single.step(actions[k, i])
                np.testing.assert_array_equal(obs["image"], vec_images[k + 1][i])
                assert obs["speed"][0] == vec_speeds[k][i]
        finally:
            single.close()
    assert not np.array_equal(vec_images[-1][0], vec_images[-1][1])
