"""The description queue: a per-user cap, round-robin across users, one generation per key
while it is in flight, no other user's row id, and no "stalled" rows that are only waiting.

Two web workers racing for the same generation: tests/tinyrag_site/test_shared_limits.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from search.descriptions import services as describe
from search.descriptions.models import Description
from search.queries.models import SearchQuery
from search.queries.services import image_search, text_search
from tests.fixtures.backends import drop_queued_tasks, queued_tasks, run_queued_tasks, task_statuses
from tests.search.test_api import token_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue(search_index, vlm_settings):
    vlm_settings.TINYRAG_VLM_MIN_NEW_TOKENS = 4  # a random-weight model may stop at once
    vlm_settings.TINYRAG_DESCRIPTION_PENDING_MAX = 3
    return vlm_settings


def lemon_query(user) -> SearchQuery:
    return text_search(user=user, text="lemon", top_k=5)


def images_of(query: SearchQuery) -> list[int]:
    return list(query.results.order_by("rank").values_list("image_id", flat=True))


def test_a_user_has_at_most_the_pending_limit_queued(queue, user, other_user):
    query = lemon_query(user)
    ids = images_of(query)
    for image_id in ids[:3]:
        describe.request_description(query=query, image_id=image_id)
    with pytest.raises(describe.DescriptionQueueFull, match="already have 3 descriptions"):
        describe.request_description(query=query, image_id=ids[3])
    assert Description.objects.count() == 3
    # another user is not held back by alice's queue
    other = describe.request_description(query=lemon_query(other_user), image_id=ids[3])
    assert other.status == "queued"
    # once alice's are done, she may ask again
    run_queued_tasks()
    assert describe.request_description(query=query, image_id=ids[4]).status == "queued"


def test_the_api_answers_a_full_queue_with_429_and_retry_after(queue, user, api_rate):
    api_rate("1000/minute")
    api = token_client(Token.objects.create(user=user).key)
    query = lemon_query(user)
    url = f"/api/v1/queries/{query.pk}/descriptions"
    codes = [api.post(url, {"image_id": i}, format="json").status_code for i in images_of(query)]
    assert codes == [202, 202, 202, 429, 429]
    response = api.post(url, {"image_id": images_of(query)[4]}, format="json")
    assert response.json()["error"]["code"] == "throttled"
    assert "already have 3 descriptions" in response.json()["error"]["message"]
    assert response["Retry-After"] == str(describe.QUEUE_FULL_RETRY_SECONDS)


def test_the_page_says_the_queue_is_full(queue, auth_client, user, api_rate):
    api_rate("1000/minute")
    query = lemon_query(user)
    url = reverse("search:describe", args=[query.pk])
    for image_id in images_of(query)[:3]:
        auth_client.post(url, {"image_id": image_id})
    response = auth_client.post(url, {"image_id": images_of(query)[3]}, follow=True)
    assert "You already have 3 descriptions waiting or being written" in response.content.decode()
    assert Description.objects.count() == 3


def test_workers_serve_users_round_robin(queue, user, other_user):
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    alice = [
        describe.request_description(query=alice_query, image_id=i)
        for i in images_of(alice_query)[:3]
    ]
    bob = describe.request_description(query=bob_query, image_id=images_of(bob_query)[4])
    assert bob.created_at > alice[-1].created_at  # bob asked after all of alice's
    run_queued_tasks()
    rows = Description.objects.order_by("started_at")
    assert all(row.status == "done" for row in rows)
    # alice's first, then bob's single one, not behind the rest of alice's
    assert [row.pk for row in rows] == [alice[0].pk, bob.pk, alice[1].pk, alice[2].pk]


def test_identical_requests_in_flight_share_one_generation(queue, user, other_user, api_rate):
    api_rate("1000/minute")
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    image_id = images_of(alice_query)[0]
    first = describe.request_description(query=alice_query, image_id=image_id)
    follower = describe.request_description(query=bob_query, image_id=image_id)
    assert (follower.status, follower.reused_from_id) == ("queued", first.pk)
    assert Description.objects.filter(generates=True).count() == 1
    assert queued_tasks() == 1  # one generation, one task

    run_queued_tasks()
    bob = token_client(Token.objects.create(user=other_user).key)
    body = bob.get(f"/api/v1/descriptions/{follower.pk}").json()
    first.refresh_from_db()
    assert (body["status"], body["text"], body["tokens"]) == ("done", first.text, first.tokens)
    assert body["reused"] is True
    assert body["reused_from"] is None  # alice's row id is not bob's to see
    # a follower does not count as one of bob's pending generations
    assert Description.objects.get(pk=follower.pk).finished


def test_followers_take_over_when_the_generation_is_deleted(
    queue, user, other_user, django_user_model
):
    carol = django_user_model.objects.create_user("carol", password="x-long-passphrase-1")
    alice_query = lemon_query(user)
    image_id = images_of(alice_query)[0]
    describe.request_description(query=alice_query, image_id=image_id)
    bob = describe.request_description(query=lemon_query(other_user), image_id=image_id)
    carol_row = describe.request_description(query=lemon_query(carol), image_id=image_id)
    alice_query.delete()  # her generation goes with it; bob's and carol's rows stay
    assert Description.objects.count() == 2

    bob = describe.with_stall_check(Description.objects.get(pk=bob.pk))
    assert (bob.generates, bob.status) == (True, "queued")  # bob's row generates now
    carol_row = describe.with_stall_check(Description.objects.get(pk=carol_row.pk))
    assert (carol_row.generates, carol_row.reused_from_id) == (False, bob.pk)  # carol follows
    run_queued_tasks()
    carol_row = describe.with_stall_check(Description.objects.get(pk=carol_row.pk))
    bob.refresh_from_db()
    assert (bob.status, carol_row.status, carol_row.text) == ("done", "done", bob.text)


def test_a_users_own_reuse_shows_the_row_it_came_from(queue, user, api_rate):
    api_rate("1000/minute")
    api = token_client(Token.objects.create(user=user).key)
    first_query, second_query = lemon_query(user), lemon_query(user)
    image_id = images_of(first_query)[0]
    first = describe.request_description(query=first_query, image_id=image_id)
    run_queued_tasks()
    again = api.post(
        f"/api/v1/queries/{second_query.pk}/descriptions", {"image_id": image_id}, format="json"
    ).json()
    assert (again["status"], again["reused"], again["reused_from"]) == ("done", True, first.pk)


def test_the_same_upload_of_two_users_is_two_generations(queue, user, other_user, jpeg_bytes):
    alice_query = image_search(user=user, data=jpeg_bytes, top_k=3)
    bob_query = image_search(user=other_user, data=jpeg_bytes, top_k=3)
    alice = describe.request_description(query=alice_query)
    bob = describe.request_description(query=bob_query)
    assert alice.image_key == bob.image_key  # the same pixels...
    assert (bob.generates, bob.reused_from_id) == (True, None)  # ...but an upload is private
    assert queued_tasks() == 2


def test_a_queued_row_waiting_for_its_task_is_not_stalled(queue, user):
    query = lemon_query(user)
    description = describe.request_description(query=query, image_id=images_of(query)[0])
    long_ago = timezone.now() - timedelta(seconds=queue.TINYRAG_DESCRIPTION_STALL_SECONDS * 3)
    Description.objects.filter(pk=description.pk).update(updated_at=long_ago)
    for _ in range(3):  # a page polling it
        assert describe.with_stall_check(Description.objects.get(pk=description.pk)).status == (
            "queued"
        )
    assert queued_tasks() == 1  # no extra task per poll


def test_a_queued_row_whose_task_was_lost_gets_one(queue, user):
    query = lemon_query(user)
    description = describe.request_description(query=query, image_id=images_of(query)[0])
    drop_queued_tasks()  # the task is gone (a flushed queue, a restore)
    describe.with_stall_check(Description.objects.get(pk=description.pk))
    assert queued_tasks() == 0  # a moment after its request: its task may be on its way
    a_minute_ago = timezone.now() - timedelta(seconds=60)
    Description.objects.filter(pk=description.pk).update(updated_at=a_minute_ago)
    describe.with_stall_check(Description.objects.get(pk=description.pk))
    assert queued_tasks() == 1
    run_queued_tasks()
    description.refresh_from_db()
    assert description.status == "done"


@pytest.fixture
def jpeg_bytes(dataset_imported) -> bytes:
    from search.catalog.models import Image

    image = Image.objects.filter(split="train").select_related("dataset").first()
    return (dataset_imported / image.path).read_bytes()


def test_deleting_the_query_stops_its_generation(
    search_index, openai_vlm_settings, fake_vlm_server, user, monkeypatch
):
    fake_vlm_server.chunks = [f"word{n} " for n in range(200)]
    query = lemon_query(user)
    describe.request_description(query=query, image_id=images_of(query)[0])
    pieces: list[str] = []
    real_add = describe._RowProgress.add

    def add_then_delete(progress, piece):
        pieces.append(piece)
        if len(pieces) == 1:
            query.delete()  # the user deletes the query while its description is written
        real_add(progress, piece)

    monkeypatch.setattr(describe._RowProgress, "add", add_then_delete)
    run_queued_tasks()
    assert not Description.objects.exists()
    # the next write found no row and the generation stopped there, not 200 pieces later
    assert len(pieces) <= describe.FLUSH_EVERY_PIECES
    assert task_statuses() == ["SUCCESSFUL"]


def test_a_follower_takes_over_only_within_its_owners_limit(queue, user, other_user):
    queue.TINYRAG_DESCRIPTION_PENDING_MAX = 1
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    ids = images_of(alice_query)
    describe.request_description(query=alice_query, image_id=ids[0])
    follower = describe.request_description(query=bob_query, image_id=ids[0])
    describe.request_description(query=bob_query, image_id=ids[1])  # bob's one place
    alice_query.delete()
    follower = describe.with_stall_check(Description.objects.get(pk=follower.pk))
    assert follower.status == "failed"
    assert "The description it shared was deleted" in follower.error


def test_the_whole_queue_has_a_ceiling(queue, user, other_user):
    queue.TINYRAG_DESCRIPTION_QUEUE_MAX = 4
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    for image_id in images_of(alice_query)[:3]:
        describe.request_description(query=alice_query, image_id=image_id)
    describe.request_description(query=bob_query, image_id=images_of(bob_query)[3])
    with pytest.raises(describe.DescriptionQueueFull, match="more descriptions waiting"):
        describe.request_description(query=bob_query, image_id=images_of(bob_query)[4])


def test_a_copy_of_another_users_description_keeps_its_own_times(queue, user, other_user):
    alice_query = lemon_query(user)
    image_id = images_of(alice_query)[0]
    first = describe.request_description(query=alice_query, image_id=image_id)
    run_queued_tasks()
    first.refresh_from_db()
    copy = describe.request_description(query=lemon_query(other_user), image_id=image_id)
    assert (copy.status, copy.text) == ("done", first.text)
    assert copy.started_at is None  # when alice's ran is hers
    assert copy.finished_at > first.finished_at


def test_a_follower_whose_generation_finished_can_be_regenerated(queue, user, other_user):
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    image_id = images_of(alice_query)[0]
    describe.request_description(query=alice_query, image_id=image_id)
    follower = describe.request_description(query=bob_query, image_id=image_id)
    run_queued_tasks()  # alice's generation is done; bob's row has not been read since
    assert Description.objects.get(pk=follower.pk).status == "queued"
    fresh = describe.request_description(query=bob_query, image_id=image_id, regenerate=True)
    assert fresh.pk != follower.pk
    assert (fresh.generates, fresh.status) == (True, "queued")
    assert Description.objects.get(pk=follower.pk).status == "done"  # caught up on the way


def test_a_generation_in_flight_is_followed_only_in_its_language(queue, user, other_user):
    alice_query, bob_query = lemon_query(user), lemon_query(other_user)
    image_id = images_of(alice_query)[0]
    english = describe.request_description(query=alice_query, image_id=image_id)
    indonesian = describe.request_description(query=bob_query, image_id=image_id, language="id")
    follower = describe.request_description(query=bob_query, image_id=image_id, language="en")

    assert (indonesian.generates, indonesian.reused_from_id) == (True, None)
    assert (follower.generates, follower.reused_from_id) == (False, english.pk)
    assert queued_tasks() == 2  # one generation per language
    run_queued_tasks()
    english.refresh_from_db()
    indonesian.refresh_from_db()
    follower = describe.with_stall_check(Description.objects.get(pk=follower.pk))  # as read
    assert (english.status, indonesian.status, follower.status) == ("done", "done", "done")
    assert follower.text == english.text
