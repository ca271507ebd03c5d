/* test_dist_plan.c: partition invariants (serial, no MPI). */
#include "dist/dist_plan.h"
#include "wq_testutil.h"

static void plan_rows_should_cover_every_row_once(void **state)
{
    (void)state;
    for (int64_t rows = 0; rows <= 11; rows++)
        for (int size = 1; size <= 9; size++) {
            int64_t next = 0;
            for (int rank = 0; rank < size; rank++) {
                wq_row_span s;
                assert_int_equal(wq_dist_plan_rows(rows, size, rank, &s), WQ_OK);
                assert_int_equal(s.row_begin, next);
                assert_true(s.row_count == rows / size || s.row_count == rows / size + 1);
                next += s.row_count;
            }
            assert_int_equal(next, rows);
        }
    wq_row_span s;
    assert_int_equal(wq_dist_plan_rows(5, 0, 0, &s), WQ_ERR_ARG);
    assert_int_equal(wq_dist_plan_rows(5, 2, 2, &s), WQ_ERR_ARG);
}

static void plan_items_should_balance_like_lpt(void **state)
{
    (void)state;
    /* hand-derived: costs 7,5,4,3,1 on 2 ranks: 7->r0 (7,0), 5->r1 (7,5), 4->r1 (7,9), 3->r0 (10,9), 1->r1 (10,10) */
    int64_t cost[] = {4, 7, 1, 5, 3};
    int owner[5];
    int64_t order[5];
    assert_int_equal(wq_dist_plan_items(cost, 5, 2, owner, order), WQ_OK);
    assert_int_equal(owner[1], 0); /* 7 */
    assert_int_equal(owner[3], 1); /* 5 */
    assert_int_equal(owner[0], 1); /* 4 */
    assert_int_equal(owner[4], 0); /* 3 */
    assert_int_equal(owner[2], 1); /* 1 */
    /* processing order: decreasing cost 7,5,4,3,1 = indices 1,3,0,4,2 */
    const int64_t want[5] = {1, 3, 0, 4, 2};
    for (int i = 0; i < 5; i++)
        assert_int_equal(order[i], want[i]);
    /* ties keep the lower index first */
    int64_t tie[] = {2, 5, 2, 5};
    assert_int_equal(wq_dist_plan_items(tie, 4, 2, owner, order), WQ_OK);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 0);
    assert_int_equal(order[3], 2);
}

static void plan_items_should_handle_more_ranks_than_items(void **state)
{
    (void)state;
    int64_t cost[] = {3, 3, 3};
    int owner[3];
    assert_int_equal(wq_dist_plan_items(cost, 3, 8, owner, NULL), WQ_OK);
    assert_int_equal(owner[0], 0);
    assert_int_equal(owner[1], 1);
    assert_int_equal(owner[2], 2);
    assert_int_equal(wq_dist_plan_items(cost, 0, 4, owner, NULL), WQ_OK);
    assert_int_equal(wq_dist_plan_items(cost, 3, 0, owner, NULL), WQ_ERR_ARG);
}

static void plan_stages_should_minimise_the_bottleneck(void **state)
{
    (void)state;
    double cost[] = {1, 1, 1, 1, 4, 1, 1};
    int64_t first[4];
    assert_int_equal(wq_dist_plan_stages(cost, 7, 3, first), WQ_OK);
    /* optimum bottleneck is 4: [1 1 1 1] [4] [1 1] */
    assert_int_equal(first[0], 0);
    assert_int_equal(first[1], 4);
    assert_int_equal(first[2], 5);
    assert_int_equal(first[3], 7);
    double eq[] = {2, 2, 2, 2, 2};
    int64_t f2[6];
    assert_int_equal(wq_dist_plan_stages(eq, 5, 5, f2), WQ_OK);
    for (int s = 0; s <= 5; s++) assert_int_equal(f2[s], s);
    int64_t f3[3];
    assert_int_equal(wq_dist_plan_stages(eq, 5, 2, f3), WQ_OK);
    assert_int_equal(f3[1], 3); /* 6 | 4: bottleneck 6 either way, greedy cut after 3 */
    assert_int_equal(f3[2], 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_rows_should_cover_every_row_once),
        cmocka_unit_test(plan_items_should_balance_like_lpt),
        cmocka_unit_test(plan_items_should_handle_more_ranks_than_items),
        cmocka_unit_test(plan_stages_should_minimise_the_bottleneck),
    };
    return cmocka_run_group_tests_name("dist_plan", tests, NULL, NULL);
}
