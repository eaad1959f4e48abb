"""A small Chinese set of residents' messages written for the tests: five departments, a few hundred
messages built from hand-written problem phrases, places and sentence frames (seeded, reproducible)."""

from __future__ import annotations

import random

PROBLEMS: dict[str, list[str]] = {
    "城管": ["路边有人占道经营摆摊", "小区门口违章搭建", "人行道上乱停共享单车", "店铺招牌破损随时掉落", "垃圾桶满了没人清运",
             "街边烧烤油烟很大", "广告牌乱贴小广告", "建筑垃圾堆在路边"],
    "交通": ["红绿灯坏了不亮", "路口经常堵车", "公交站牌被撞倒", "道路坑洼积水", "斑马线看不清需要重新划线", "违停车辆堵住消防通道",
             "路灯不亮晚上很黑", "学校门口缺少减速带"],
    "环保": ["工厂排放黑烟气味刺鼻", "工地夜间施工噪音扰民", "河道发臭有死鱼", "工地扬尘很大", "空气里有焦糊味", "污水直接排进河里",
             "餐馆噪音太吵影响休息", "焚烧秸秆烟雾很大"],
    "水务": ["自来水发黄有异味", "水管爆裂漏水", "停水了没有通知", "下水道堵塞污水外溢", "井盖缺失很危险", "水压太低楼上没水",
             "暴雨后路面积水排不出去", "消火栓漏水"],
    "住建": ["楼道墙皮脱落", "电梯经常故障困人", "老旧小区外墙开裂", "物业不维修屋顶漏雨", "房屋出现裂缝担心安全", "楼顶违建加盖",
             "小区加装电梯进度慢", "车库渗水墙面发霉"],
}
PLACES = ["朝阳区建国路", "海淀区中关村大街", "西城区金融街", "丰台区南三环", "东城区王府井", "通州区新华大街", "昌平区回龙观",
          "大兴区黄村"]
FRAMES = ["{place}附近{problem}，请尽快处理。", "我住在{place}，{problem}，已经好几天了。", "反映一下：{problem}（{place}）",
          "{problem}，地点在{place}，希望相关部门管一管。", "{place}一带{problem}，居民意见很大"]


def messages(n_per_department: int = 60, seed: int = 7) -> list[tuple[str, str]]:
    """``(text, department)`` pairs, ``n_per_department`` per department, shuffled."""
    rng = random.Random(seed)
    out = []
    for dept, probs in PROBLEMS.items():
        for _ in range(n_per_department):
            out.append((rng.choice(FRAMES).format(place=rng.choice(PLACES), problem=rng.choice(probs)), dept))
    rng.shuffle(out)
    return out


#: Messages written apart from the training frames (other words, other places): the end-to-end test set.
HELD_OUT: list[tuple[str, str]] = [
    ("石景山区八角路口的红绿灯坏了，车都堵住了", "交通"),
    ("门头沟那边路灯不亮，走夜路太危险", "交通"),
    ("楼下有人摆摊占道经营，还乱扔垃圾", "城管"),
    ("顺义区有违章搭建的铁皮房", "城管"),
    ("隔壁工地半夜施工，噪音吵得睡不着", "环保"),
    ("河道里的水发臭，还漂着死鱼", "环保"),
    ("今天早上自来水发黄，不敢喝", "水务"),
    ("小区下水道堵塞，污水流到路上", "水务"),
    ("我们楼的电梯又故障了，老人被困", "住建"),
    ("屋顶漏雨，物业一直不维修", "住建"),
]
